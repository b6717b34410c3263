"""Plots as text GitHub renders without images: Mermaid line charts and confusion tables.

Names and titles come from report.json, so they go through `runner.report.inert` like all text.
"""

from runner.report import inert
from runner.report.bundle import Confusion, Curve

MAX_POINTS = 50
MAX_SERIES = 12  # lines drawn in one chart
MAX_CLASSES = 30  # rows and columns of a confusion table: its cells grow with the square
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
COLOUR_NAMES = ("blue", "orange", "green", "red", "purple", "brown")  # words: a font may lack emoji
MAX_SLUG = 60
MAX_CHART_LINE = 2_000  # characters of a chart's line: 50 points of any sensible value


def slug(title: str) -> str:
    """Return a file name made of the title's ASCII letters and digits (a name `inert.safe_name` keeps)."""
    name = "".join(c if c.isascii() and c.isalnum() else "_" for c in title.lower()[:MAX_SLUG])
    return name.strip("_") or "plot"


def number(value: float) -> str:
    """Format a value compactly: 0.9633, 12, 1,234.5."""
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def signed(value: float) -> str:
    """Format a change with its sign, a true minus for a decrease: +0.0134, −0.2, 0."""
    text = number(abs(value))
    if text == "0":
        return "0"
    return f"+{text}" if value > 0 else f"\u2212{text}"


def p_value(value: float) -> str:
    """Format a p-value with two significant digits: p = 0.31, p = 0.0039, p < 0.001."""
    return "p < 0.001" if value < 0.001 else f"p = {value:.2g}"


def mermaid(curve: Curve) -> tuple[str, str]:
    """Return a Mermaid xychart of head and base lines, and the legend line that names them."""
    lines = [(f"head {s.name}", s) for s in curve.head] + [(f"base {s.name}", s) for s in curve.base]
    lines = lines[:MAX_SERIES]
    longest = max((s.x for _, s in lines), key=len, default=[])
    points = max((max(len(s.x), len(s.y)) for _, s in lines), default=0)
    step = max(1, -(-points // MAX_POINTS))
    values = [v for _, s in lines for v in s.y]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.05 or 0.5
    palette = ", ".join(PALETTE[i % len(PALETTE)] for i in range(len(lines)))
    chart = [
        f'%%{{init: {{"themeVariables": {{"xyChart": {{"plotColorPalette": "{palette}"}}}}}}}}%%',
        "xychart-beta",
        f'  title "{inert.mermaid_text(curve.title)}"',
        f'  x-axis "{inert.mermaid_text(curve.x_label)}" [{", ".join(number(x) for x in longest[::step])}]',
        f"  y-axis {number(low - pad)} --> {number(high + pad)}",
        *(f"  line [{', '.join(number(v) for v in s.y[::step])}]" for _, s in lines),
    ]
    legend = " · ".join(
        f"{COLOUR_NAMES[i % len(COLOUR_NAMES)]}: {inert.text(name)}" for i, (name, _) in enumerate(lines)
    )
    return inert.fence(chart, "mermaid", line_limit=MAX_CHART_LINE), legend


def _cell(matrix: list[list[int]] | None, i: int, j: int) -> int | None:
    """Return a count of a matrix that may be ragged (report.json is not trusted to be square)."""
    if matrix is None or i >= len(matrix) or j >= len(matrix[i]):
        return None
    return matrix[i][j]


def confusion_table(confusion: Confusion) -> str:
    """Return the head's matrix as a Markdown table; a cell that differs from base shows base in brackets.

    At most `MAX_CLASSES` classes are shown, with a line that says how many were left out.
    """
    names = [inert.text(name) for name in confusion.classes[:MAX_CLASSES]]
    rows = ["| actual \\\\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            count, base = _cell(confusion.head, i, j), _cell(confusion.base, i, j)
            cell = "?" if count is None else f"**{count}**" if i == j else str(count)
            if confusion.base is not None and base != count:
                cell += f" ({'?' if base is None else base})"
            cells.append(cell)
        rows.append(f"| **{name}** | " + " | ".join(cells) + " |")
    left = len(confusion.classes) - len(names)
    if left > 0:
        rows.append(f"\n{left:,} more class{'es' if left > 1 else ''} not shown.")
    return "\n".join(rows)

"""Plots as text GitHub renders without images: Mermaid line charts and confusion tables."""

from runner.report.bundle import Confusion, Curve

MAX_POINTS = 50
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
SWATCHES = ("🟦", "🟧", "🟩", "🟥", "🟪", "🟫")


def slug(title: str) -> str:
    """Return a file name made of the title's letters and digits."""
    return "".join(c if c.isalnum() else "_" for c in title.lower()).strip("_") or "plot"


def escape(text: str) -> str:
    """Escape Markdown and HTML in text from the pipeline, so it reads as written and injects nothing."""
    text = " ".join(str(text).split())
    for char in "\\`*_[]<>|#!~":
        text = text.replace(char, f"\\{char}")
    return text


def code(text: str) -> str:
    """Return text as a code span: shown as written, never read as Markdown or HTML."""
    return "`" + " ".join(str(text).split()).replace("`", "'") + "`"


def log_block(lines: list[str]) -> str:
    """Return log lines as a fenced text block that no line can close early."""
    body = "\n".join(lines).replace("```", "'''")
    return f"```text\n{body}\n```"


def number(value: float) -> str:
    """Format a value compactly: 0.9633, 12, 1,234.5."""
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def mermaid(curve: Curve) -> tuple[str, str]:
    """Return a Mermaid xychart of head and base lines, and the legend line that names them."""
    lines = [(f"head {s.name}", s) for s in curve.head] + [(f"base {s.name}", s) for s in curve.base]
    longest = max((s.x for _, s in lines), key=len, default=[])
    step = max(1, -(-len(longest) // MAX_POINTS))
    values = [v for _, s in lines for v in s.y]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.05 or 0.5
    palette = ", ".join(PALETTE[i % len(PALETTE)] for i in range(len(lines)))
    chart = [
        "```mermaid",
        f'%%{{init: {{"themeVariables": {{"xyChart": {{"plotColorPalette": "{palette}"}}}}}}}}%%',
        "xychart-beta",
        f'  title "{_quoted(curve.title)}"',
        f'  x-axis "{_quoted(curve.x_label)}" [{", ".join(number(x) for x in longest[::step])}]',
        f"  y-axis {number(low - pad)} --> {number(high + pad)}",
        *(f"  line [{', '.join(number(v) for v in s.y[::step])}]" for _, s in lines),
        "```",
    ]
    legend = " · ".join(f"{SWATCHES[i % len(SWATCHES)]} {escape(name)}" for i, (name, _) in enumerate(lines))
    return "\n".join(chart), legend


def _quoted(text: str) -> str:
    return text.replace('"', "'").replace("\n", " ")


def confusion_table(confusion: Confusion) -> str:
    """Return the head's matrix as a Markdown table; a cell that differs from base shows base in brackets."""
    names = [escape(name) for name in confusion.classes]
    rows = ["| actual \\\\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            count = confusion.head[i][j]
            cell = f"**{count}**" if i == j else str(count)
            if confusion.base is not None and confusion.base[i][j] != count:
                cell += f" ({confusion.base[i][j]})"
            cells.append(cell)
        rows.append(f"| **{name}** | " + " | ".join(cells) + " |")
    return "\n".join(rows)

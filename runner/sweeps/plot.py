"""A parallel-coordinates plot of a sweep, as SVG written by hand (the bot's image has no plotting library).

One vertical axis per swept parameter, then the ranking metric; each done point is a line across
them, the best one drawn bold. Numeric axes are scaled from their lowest to their highest value,
others place their values evenly in the order they first appear. Every text is XML-escaped.
"""

from xml.sax.saxutils import escape, quoteattr

from runner.report.text import number
from runner.sweeps.aggregate import best_point, metrics_of, ranking_metric
from runner.sweeps.state import SweepPoint

WIDTH, HEIGHT, MARGIN, TOP = 640, 320, 70, 40
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _scale(values: list[str]) -> dict[str, float]:
    """Return each value's height on its axis, 0 (bottom) to 1 (top)."""
    numbers = [_float(v) for v in values]
    if all(n is not None for n in numbers):
        low, high = min(n for n in numbers if n is not None), max(n for n in numbers if n is not None)
        return {
            v: 0.5 if high == low else ((n or 0.0) - low) / (high - low)
            for v, n in zip(values, numbers, strict=True)
        }
    ordered = list(dict.fromkeys(values))
    return {v: 0.5 if len(ordered) == 1 else ordered.index(v) / (len(ordered) - 1) for v in values}


def _columns(points: list[SweepPoint], metric: str) -> list[tuple[str, dict[int, str]]]:
    """Return each axis's name and each drawn point's value on it (as text)."""
    columns = [
        (key, {p.index: value for p in points for k, value in p.settings if k == key})
        for key, _ in points[0].settings
    ]
    values = {
        p.index: next((number(m.head) for m in metrics_of(p) if m.key == metric and m.head is not None), None)
        for p in points
    }
    columns.append((metric, {index: value for index, value in values.items() if value is not None}))
    return columns


def _text(x: float, y: float, content: str, anchor: str = "middle") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor={quoteattr(anchor)}>{escape(content[:40])}</text>'


def parallel_coordinates(points: list[SweepPoint]) -> bytes | None:
    """Return the SVG of the done points across the swept parameters and the ranking metric, or None."""
    metric = ranking_metric(points)
    if metric is None or not points:
        return None
    columns = _columns(points, metric)
    drawn = [p for p in points if p.index in columns[-1][1]]
    step = (WIDTH - 2 * MARGIN) / max(1, len(columns) - 1)
    height = HEIGHT - TOP - 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
    ]
    scales = [_scale([values[p.index] for p in drawn]) for _, values in columns]
    for i, (name, _) in enumerate(columns):
        x = MARGIN + i * step
        parts.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + height}" stroke="#999"/>')
        parts.append(_text(x, HEIGHT - 15, name))
        for value, level in scales[i].items():
            parts.append(_text(x - 6, TOP + height * (1 - level) + 4, value, "end"))
    best = best_point(points)
    for n, point in enumerate(drawn):
        coords = " ".join(
            f"{MARGIN + i * step:.1f},{TOP + height * (1 - scales[i][values[point.index]]):.1f}"
            for i, (_, values) in enumerate(columns)
        )
        bold = best is not None and point.index == best.index
        colour = COLOURS[n % len(COLOURS)]
        line = f'points="{coords}" fill="none" stroke="{colour}" stroke-width="{4 if bold else 1.5}"'
        parts.append(f"<polyline {line}><title>{escape(point.experiment)}</title></polyline>")
    parts.append("</svg>")
    return "\n".join(parts).encode()

"""The sweep comment: one sticky comment per sweep, a row per point, the best marked, then the plot.

Found again by a hidden marker naming the sweep, so each update rewrites the same comment. The
table holds every number the plot draws, so nothing depends on the image being shown. Metric names
and values come from report bundles: each is written through `runner.report.inert`.
"""

from runner.report import inert
from runner.report.text import number
from runner.sweeps.aggregate import Metric, best_point, metrics_of, ranking_metric
from runner.sweeps.state import FINISHED, SweepPoint

MARKER = "<!-- orbit:sweep {sweep} -->"
BEST = "★ best"


def marker(sweep: int) -> str:
    """Return the hidden first line that identifies a sweep's comment."""
    return MARKER.format(sweep=sweep)


def metric_keys(points: list[SweepPoint]) -> list[str]:
    """Return the metric columns: every main metric a done point reported, in the order first seen."""
    keys: list[str] = []
    for point in points:
        keys += [metric.key for metric in metrics_of(point) if metric.key not in keys]
    return keys


def _cell(metric: Metric | None) -> str:
    """Return a metric's cell: its value, its change from the base and the change's 95 % interval."""
    if metric is None or metric.head is None:
        return "—"
    text = number(metric.head)
    delta = metric.delta
    if delta is not None:
        text += f" ({'+' if delta >= 0 else '−'}{number(abs(delta))}"
        if metric.low is not None and metric.high is not None:
            text += f", 95 % CI {_signed(metric.low)} … {_signed(metric.high)}"
        text += ")"
    return text


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "−") + number(abs(value))


def _status(point: SweepPoint, running: set[int]) -> str:
    if point.status in FINISHED:
        note = point.result.get("note")
        return point.status + (f": {inert.text(note, 80)}" if note and point.status != "done" else "")
    return "running" if point.index in running else "pending"


def _row(point: SweepPoint, keys: list[str], best: SweepPoint | None, running: set[int]) -> str:
    metrics = {metric.key: metric for metric in metrics_of(point)}
    cells = [
        BEST if best is not None and point.index == best.index else "",
        inert.code(point.experiment, cell=True),
        *(inert.code(value, cell=True) for _, value in point.settings),
        *(_cell(metrics.get(key)) for key in keys),
        _status(point, running),
    ]
    return "| " + " | ".join(cells) + " |"


def _heading(points: list[SweepPoint]) -> str:
    done = sum(point.status in FINISHED for point in points)
    sha = points[0].sha[:7] if points else ""
    return f"## orbit sweep of `{sha}`: {done} of {len(points)} done"


def sweep_markdown(points: list[SweepPoint], running: set[int], plot_url: str | None) -> str:
    """Return a sweep's comment below its marker: heading, table, best point and plot."""
    keys = metric_keys(points)
    params = [key for key, _ in points[0].settings] if points else []
    header = ["", "experiment", *(inert.code(k, cell=True) for k in params), *(inert.text(k) for k in keys)]
    lines = [
        _heading(points),
        "",
        "| " + " | ".join([*header, "status"]) + " |",
        "|" + "---|" * (len(header) + 1),
    ]
    best = best_point(points)
    lines += [_row(point, keys, best, running) for point in points]
    lines.append("")
    lines.append(
        "Each metric: the point's value (its change from the base, and the change's 95 % interval "
        "where the report judged it)."
    )
    if best is not None:
        ranked = inert.text(ranking_metric(points))
        lines.append(
            f"Best by {ranked}: `{best.experiment}`. "
            f"Comment `/apply {best.experiment}` to commit its params.yaml to this branch."
        )
    if plot_url:
        lines += ["", f"![Parallel coordinates of the sweep]({plot_url})"]
    return "\n".join(lines) + "\n"

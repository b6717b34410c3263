"""A point's result from its report bundle, and the best point of a sweep.

A point's report compares its workspace with the base, as a PR's own report does: its main metrics
(those without a `.` in their name: `val_acc`, not `per_class.star.f1`) with the base's value and,
where the report judged significance, the 95 % interval of the change. The names come from a job
that ran the PR's code: they are stored as read and made inert only where they are written.
"""

import math
from dataclasses import dataclass
from typing import Any

from runner.report.bundle import Report
from runner.sweeps.state import DONE, SweepPoint

MAX_METRICS = 4  # columns of the table
PREFERRED = "val_acc"


@dataclass(frozen=True)
class Metric:
    """One main metric of a point: its value, the base's, and the interval of the change if judged."""

    key: str
    head: float | None
    base: float | None = None
    low: float | None = None
    high: float | None = None
    sense: str = "neutral"

    @property
    def delta(self) -> float | None:
        """Return the change from the base, when both are known."""
        return None if self.head is None or self.base is None else self.head - self.base


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _intervals(report: Report) -> dict[str, tuple[float, float]]:
    """Return the 95 % interval of each metric's change, where the report judged significance."""
    found: dict[str, tuple[float, float]] = {}
    for item in getattr(report, "significance", None) or []:  # the report's own, where it has one
        low, high = _finite(getattr(item, "low", None)), _finite(getattr(item, "high", None))
        if low is not None and high is not None:
            found.setdefault(str(item.key), (low, high))
    return found


def result_of(report: Report) -> dict[str, Any]:
    """Return what the sweep table keeps of a point's report: its main metrics, at most MAX_METRICS."""
    intervals = _intervals(report)
    metrics = []
    for row in (row for row in report.metrics if "." not in row.key):
        low, high = intervals.get(row.key, (None, None))
        metric = Metric(row.key, _finite(row.head), _finite(row.base), low, high, row.sense)
        metrics.append(vars(metric))
    return {"metrics": metrics[:MAX_METRICS]}


def metrics_of(point: SweepPoint) -> list[Metric]:
    """Return the metrics recorded for a point (none unless it is done)."""
    listed = point.result.get("metrics") if point.status == DONE else None
    return [Metric(**item) for item in listed or [] if isinstance(item, dict)]


def ranking_metric(points: list[SweepPoint]) -> str | None:
    """Return the metric that ranks the points: val_acc where reported, else the first one reported."""
    keys = [metric.key for point in points for metric in metrics_of(point) if metric.head is not None]
    return PREFERRED if PREFERRED in keys else (keys[0] if keys else None)


def best_point(points: list[SweepPoint]) -> SweepPoint | None:
    """Return the done point with the best value of the ranking metric (lowest when lower is better)."""
    key = ranking_metric(points)
    scored = []
    for point in points:
        metric = next((m for m in metrics_of(point) if m.key == key and m.head is not None), None)
        if metric is not None and metric.head is not None:
            scored.append((-metric.head if metric.sense == "lower" else metric.head, -point.index, point))
    return max(scored, key=lambda s: (s[0], s[1]))[2] if scored else None

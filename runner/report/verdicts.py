"""The report's judgement as text: the verdict line on top and each metric's change with its interval.

Only a significant change is called better or worse; a change inside the noise shows its size and
interval and no mark. Every value comes from report.json, so names go through `runner.report.inert`.
"""

from runner.report import inert
from runner.report.bundle import MetricRow, Report, Significance
from runner.report.text import number, p_value, signed

UNCHANGED = {"same": "=", "new": "new", "missing": "missing in head"}


def _points(value: float) -> str:
    """Format a change of a fraction as percentage points: +0.7, −0.4."""
    return signed(round(value * 100, 1))


def verdict_line(report: Report) -> list[str]:
    """Return the verdict on top: better, worse or no significant change by accuracy, or why not judged."""
    if report.failed:
        return []
    row = report.headline_significance
    if row is not None:
        test = f", {p_value(row.p_value)}" if row.p_value is not None else ""
        return [
            f"**Verdict: {row.verdict}** — {inert.text(row.key)} {_points(row.delta)} pts,"
            f" 95 % CI {_points(row.low)} … {_points(row.high)}{test}"
        ]
    if report.significance_note:
        return [f"**Verdict: unknown** — {inert.text(report.significance_note)}"]
    return []


def interval(row: Significance) -> str:
    """Return `95 % CI −0.01 … +0.03` and the p-value where there is one."""
    test = f", {p_value(row.p_value)}" if row.p_value is not None else ""
    return f"95 % CI {signed(row.low)} … {signed(row.high)}{test}"


def change(row: MetricRow, judged: Significance | None) -> str:
    """Return a metric's change: its size, and when judged on predictions, the interval and verdict."""
    delta = row.delta
    if row.verdict in UNCHANGED or delta is None:
        return UNCHANGED.get(row.verdict, "new")
    arrow = "▲" if delta > 0 else "▼" if delta < 0 else ""
    size = f"{arrow} {signed(delta)}".strip()
    if judged is None:
        return size
    return f"{size} ({interval(judged)}) {judged.verdict}"


def cell(row: MetricRow | None, judged: Significance | None, with_base: bool) -> str:
    """Return one score of the per-class table: `base → head`, and better or worse only if significant."""
    if row is None or row.head is None:
        return "—"
    if not with_base or row.base is None or row.base == row.head:
        return number(row.head)
    mark = (
        f" **{judged.verdict}**" if judged is not None and judged.verdict != "no significant change" else ""
    )
    return f"{number(row.base)} → {number(row.head)}{mark}"

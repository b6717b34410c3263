"""The per-class table: only the classes whose scores changed significantly, else the five largest changes.

A row is a class, a column a score (precision, recall, f1); a column that holds one value
throughout (a count such as support) tells nothing and is left out.
"""

from dataclasses import dataclass

from runner.report import inert
from runner.report.bundle import MetricRow, Report, Significance
from runner.report.compare import sense_of
from runner.report.tables import plural, table
from runner.report.verdicts import cell

PREFIX = "per_class."
LARGEST = 5


@dataclass(frozen=True)
class ClassScores:
    """Every score of one class: {score: row}."""

    name: str
    scores: dict[str, MetricRow]


def split_per_class(rows: list[MetricRow]) -> tuple[list[ClassScores], list[MetricRow]]:
    """Return the `per_class.<class>.<score>` rows grouped by class, and the other rows."""
    classes: dict[str, dict[str, MetricRow]] = {}
    others = []
    for row in rows:
        name, _, score = row.key.removeprefix(PREFIX).rpartition(".")
        if row.key.startswith(PREFIX) and name and score:
            classes.setdefault(name, {})[score] = row
        else:
            others.append(row)
    return [ClassScores(name, scores) for name, scores in classes.items()], others


def _columns(classes: list[ClassScores]) -> list[str]:
    """Return the scores worth a column: not counts, and not one value in every class and on both sides."""
    columns = []
    for score in dict.fromkeys(score for c in classes for score in c.scores):
        rows = [c.scores[score] for c in classes if score in c.scores]
        values = {row.base for row in rows} | {row.head for row in rows}
        if sense_of(score) != "neutral" and len(values - {None}) > 1:
            columns.append(score)
    return columns


def _largest_change(scores: ClassScores, columns: list[str]) -> float:
    deltas = [scores.scores[s].delta for s in columns if s in scores.scores]
    return max((abs(d) for d in deltas if d is not None), default=0.0)


def _shown(
    report: Report, classes: list[ClassScores], columns: list[str], judged: dict[str, Significance]
) -> tuple[str, list[ClassScores]]:
    """Return the caption and the classes to show."""
    if not report.base_has_metrics:
        return "head", classes
    significant = [
        c
        for c in classes
        if any(
            judged.get(r.key) and judged[r.key].verdict != "no significant change" for r in c.scores.values()
        )
    ]
    if significant:
        return f"the {plural(len(significant), 'class', 'classes')} that changed significantly", significant
    changed = sorted(
        (c for c in classes if _largest_change(c, columns) > 0), key=lambda c: -_largest_change(c, columns)
    )[:LARGEST]
    if not changed:
        return "no class's scores changed", []
    lead = "no class changed significantly; " if report.significance else ""
    return f"{lead}the {plural(len(changed), 'largest change')}", changed


def per_class_section(
    report: Report, classes: list[ClassScores], judged: dict[str, Significance], max_rows: int
) -> list[str]:
    """Return the per-class table of the classes worth showing, or a line saying none changed."""
    if not classes:
        return []
    columns = _columns(classes)
    caption, shown = _shown(report, classes, columns, judged)
    heading = f"**Per class** ({caption}, of {plural(len(classes), 'class', 'classes')})"
    if not shown or not columns:
        return [heading]
    with_base = report.base_has_metrics

    def row(scores: ClassScores) -> str:
        cells = [
            cell(scores.scores.get(s), judged.get(f"{PREFIX}{scores.name}.{s}"), with_base) for s in columns
        ]
        return f"| {inert.text(scores.name)} | " + " | ".join(cells) + " |"

    header = ["class", *(inert.text(column) for column in columns)]
    return [heading + "\n\n" + table(header, (row(c) for c in shown), len(shown), max_rows)]

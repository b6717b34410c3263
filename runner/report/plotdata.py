"""Turn DVC plot definitions and rows into the report's curves and confusion matrices."""

from collections.abc import Mapping
from typing import Any

from runner.report.bundle import Confusion, Curve, Series
from runner.report.collect import Collected, Rows

CURVE_TEMPLATES = frozenset({"linear", "simple", "smooth", "scatter"})
CONFUSION_TEMPLATES = frozenset({"confusion", "confusion_normalized"})


class PlotDataError(ValueError):
    """A plot's data is missing or does not fit its definition."""


def _columns(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(column) for column in value or []]


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError) as error:
        raise PlotDataError(f"{text!r} is not a number") from error


def _series(rows: dict[str, Rows], sources: Mapping[str, Any], x: str | None, required: bool) -> list[Series]:
    lines = []
    for path, columns in sources.items():
        if path not in rows:
            if required:
                raise PlotDataError(f"{path} was not produced")
            continue
        data = rows[path]
        xs = [_float(row.get(x)) if x else float(step) for step, row in enumerate(data)]
        for column in _columns(columns):
            name = column if len(sources) == 1 else f"{path}:{column}"
            lines.append(Series(name=name, x=xs, y=[_float(row.get(column)) for row in data]))
    return lines


def curve(title: str, props: Mapping[str, Any], collected: Collected) -> Curve:
    """Return a curve plot's head and base lines."""
    x = props.get("x") if isinstance(props.get("x"), str) else None
    return Curve(
        title=title,
        x_label=x or "step",
        head=_series(collected.head.plot_rows, props["y"], x, required=True),
        base=_series(collected.base.plot_rows, props["y"], x, required=False),
    )


def _counts(rows: Rows, actual: str, predicted: str, classes: list[str]) -> list[list[int]]:
    index = {name: i for i, name in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for row in rows:
        matrix[index[str(row.get(actual))]][index[str(row.get(predicted))]] += 1
    return matrix


def confusion(title: str, props: Mapping[str, Any], collected: Collected) -> Confusion:
    """Return a confusion plot's head counts, and the base's when it has them."""
    predicted = str(props.get("x"))
    path, actual_column = next(iter(props["y"].items()))
    actual = _columns(actual_column)[0]
    head_rows = collected.head.plot_rows.get(path)
    if head_rows is None:
        raise PlotDataError(f"{path} was not produced")
    base_rows = collected.base.plot_rows.get(path)
    every = [*head_rows, *(base_rows or [])]
    classes = sorted({str(row.get(c)) for row in every for c in (actual, predicted)})
    return Confusion(
        title=title,
        classes=classes,
        head=_counts(head_rows, actual, predicted, classes),
        base=_counts(base_rows, actual, predicted, classes) if base_rows else None,
    )


def plot_data(collected: Collected) -> tuple[list[Curve], list[Confusion], list[str]]:
    """Return every curve and confusion plot of the head, and a line per plot that could not be read."""
    curves, confusions, missing = [], [], []
    for title, props in collected.definitions.items():
        template = str(props.get("template", "linear"))
        try:
            if template in CONFUSION_TEMPLATES:
                confusions.append(confusion(title, props, collected))
            elif template in CURVE_TEMPLATES:
                curves.append(curve(title, props, collected))
        except (PlotDataError, KeyError, StopIteration) as error:
            missing.append(f"{title}: {error}")
    return curves, confusions, missing

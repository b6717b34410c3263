"""The figures as the drawing child receives them: plain dataclasses, so that it needs no pydantic."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    """One line of a curve figure."""

    name: str
    x: list[float]
    y: list[float]


@dataclass(frozen=True)
class CurveFigure:
    """A curve figure: head lines solid, base lines dashed."""

    title: str
    file: str
    x_label: str
    head: list[Line]
    base: list[Line]


@dataclass(frozen=True)
class ConfusionFigure:
    """A confusion matrix figure: the head's counts, and the base's beside them when there are some."""

    title: str
    file: str
    classes: list[str]
    head: list[list[int]]
    base: list[list[int]] | None


Figure = CurveFigure | ConfusionFigure

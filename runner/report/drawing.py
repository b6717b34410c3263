"""Draw the report's figures in a child process, which imports matplotlib while the parent reads.

Importing matplotlib takes about 0.4 s and a confusion matrix about as long to draw: the child
starts importing as soon as the build starts, then draws the figures it is sent, several at once
(in processes forked from it, so that matplotlib is imported once). This module stays light: the
parent imports it, and pickling a function sent to the child imports its module in the parent.
The figures travel as plain dataclasses (runner.report.figuredata): the child needs no pydantic.
"""

import gc
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from runner.report.figuredata import ConfusionFigure, CurveFigure, Figure, Line

if TYPE_CHECKING:
    from runner.report.bundle import Confusion, Curve


def figure_file(title: str) -> str:
    """Return the file name of a curve's or a confusion matrix's figure."""
    from runner.report.text import slug  # imports pydantic: in the parent, once the drawer has started

    return f"{slug(title)}.png"


def curve_figure(curve: "Curve") -> CurveFigure:
    """Return the figure of a report's curve."""
    return CurveFigure(
        title=curve.title,
        file=figure_file(curve.title),
        x_label=curve.x_label,
        head=[Line(series.name, series.x, series.y) for series in curve.head],
        base=[Line(series.name, series.x, series.y) for series in curve.base],
    )


def confusion_figure(confusion: "Confusion") -> ConfusionFigure:
    """Return the figure of a report's confusion matrix."""
    return ConfusionFigure(
        confusion.title, figure_file(confusion.title), confusion.classes, confusion.head, confusion.base
    )


def _import_matplotlib() -> None:
    """Import what drawing needs, in the child, ahead of the figures."""
    # This process only imports matplotlib and draws a few figures, then ends: collecting garbage
    # would only slow both (by a tenth), and frozen objects stay shared with the forked drawers.
    gc.disable()
    import matplotlib.artist

    # Every Artist subclass builds the docstring of its set() as matplotlib imports it (`kwdoc`):
    # a tenth of a second of the import, for text no one reads in this process.
    matplotlib.artist.kwdoc = lambda artist: ""
    import runner.report.figures  # noqa: F401  (the import is the work done ahead)

    gc.freeze()


def _draw_one(folder: Path, figure: Figure) -> str:
    from runner.report.figures import draw_confusion, draw_curve

    if isinstance(figure, ConfusionFigure):
        return draw_confusion(folder, figure)
    return draw_curve(folder, figure)


def draw_all(folder: Path, figures: list[Figure]) -> list[str]:
    """Draw every figure into `folder` and return their file names; several at once where cores allow.

    This process draws the first (the slowest) while processes forked from it draw the others.
    """
    helpers = min(len(figures), os.cpu_count() or 1) - 1
    if helpers <= 0:
        return [_draw_one(folder, figure) for figure in figures]
    with ProcessPoolExecutor(helpers, mp_context=multiprocessing.get_context("fork")) as pool:
        others = pool.map(_draw_one, [folder] * (len(figures) - 1), figures[1:])
        return [_draw_one(folder, figures[0]), *others]


class Drawer:
    """A child process that imports matplotlib from the start and draws the figures when sent them."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
        self._pool.submit(_import_matplotlib)
        self._drawing: Future[list[str]] | None = None

    def draw(self, folder: Path, curves: list["Curve"], confusions: list["Confusion"]) -> None:
        """Start drawing each figure into `folder` under its `figure_file` name, the slowest first."""
        figures: list[Figure] = [confusion_figure(confusion) for confusion in confusions]
        figures += [curve_figure(curve) for curve in curves]
        self._drawing = self._pool.submit(draw_all, folder, figures)

    def finish(self) -> None:
        """Wait until every figure is drawn; raise what drawing raised."""
        if self._drawing is not None:
            self._drawing.result()

    def __enter__(self) -> "Drawer":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

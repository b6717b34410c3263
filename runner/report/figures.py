"""The report's figures: head against base on the same axes; confusion matrices side by side.

Only the drawing child (runner.report.drawing) imports this module: it imports matplotlib.
"""

from pathlib import Path

import numpy as np

from model.plots import plot_confusion
from runner.report.figuredata import ConfusionFigure, CurveFigure

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def draw_curve(folder: Path, curve: CurveFigure) -> str:
    """Draw head lines solid and base lines dashed in the series' colour; return the file name."""
    import matplotlib.pyplot as plt

    name = curve.file
    figure, axes = plt.subplots(figsize=(6, 4))
    colour = {series.name: COLOURS[i % len(COLOURS)] for i, series in enumerate(curve.head)}
    for side, lines, style in (("head", curve.head, "-"), ("base", curve.base, "--")):
        for series in lines:
            axes.plot(series.x, series.y, style, color=colour.get(series.name), label=f"{side} {series.name}")
    axes.set(title=curve.title, xlabel=curve.x_label)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(folder / name, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return name


def draw_confusion(folder: Path, confusion: ConfusionFigure) -> str:
    """Draw the head's matrix with the base's beside it; return the file name."""
    name = confusion.file
    panels = [("head", np.array(confusion.head, dtype=np.int64))]
    if confusion.base is not None:
        panels.append(("base", np.array(confusion.base, dtype=np.int64)))
    plot_confusion(folder / name, panels, confusion.classes)
    return name

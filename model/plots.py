"""PNG figures of a training run: history, confusion matrix and a preview of predictions."""

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import NDArray

History = list[dict[str, float]]


def _save(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def _curve(axes: Axes, history: History, key: str, label: str, style: str) -> None:
    axes.plot([row["epoch"] for row in history], [row[key] for row in history], style, label=label)


def plot_history(path: Path, runs: Sequence[tuple[str, History]]) -> None:
    """Draw loss and accuracy per epoch of one or more runs on shared axes."""
    figure, (loss, accuracy) = plt.subplots(1, 2, figsize=(10, 4))
    for (name, history), line in zip(runs, ("-", "--", ":"), strict=False):
        prefix = f"{name} " if len(runs) > 1 else ""
        for key, colour in (("train", "tab:blue"), ("val", "tab:orange")):
            _curve(loss, history, f"{key}_loss", f"{prefix}{key}", line)
            _curve(accuracy, history, f"{key}_acc", f"{prefix}{key}", line)
            loss.lines[-1].set_color(colour)
            accuracy.lines[-1].set_color(colour)
    loss.set(title="Loss", xlabel="epoch")
    accuracy.set(title="Accuracy", xlabel="epoch", ylim=(0, 1.02))
    for axes in (loss, accuracy):
        axes.grid(alpha=0.3)
        axes.legend()
    _save(figure, path)


def _matrix(axes: Axes, matrix: NDArray[np.int64], classes: list[str], title: str) -> None:
    axes.imshow(matrix, cmap="Blues")
    axes.set(title=title, xlabel="predicted", ylabel="actual")
    axes.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    axes.set_yticks(range(len(classes)), classes)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        axes.text(
            col, row, str(count), ha="center", va="center", color="white" if count > threshold else "black"
        )


def plot_confusion(path: Path, panels: Sequence[tuple[str, NDArray[np.int64]]], classes: list[str]) -> None:
    """Draw one confusion matrix per panel, side by side."""
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.5), squeeze=False)
    for ax, (title, matrix) in zip(axes[0], panels, strict=True):
        _matrix(ax, matrix, classes, title)
    _save(figure, path)


def plot_predictions(
    path: Path, images: NDArray[np.uint8], actual: list[str], predicted: list[str], confidence: list[float]
) -> None:
    """Draw a grid of images titled with the prediction, red where it is wrong."""
    columns = 6
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, truth, guess, p in zip(axes.flat, images, actual, predicted, confidence, strict=False):
        ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
        ax.set_title(
            f"{guess} {p:.0%}\n(true: {truth})", fontsize=8, color="black" if truth == guess else "red"
        )
    _save(figure, path)

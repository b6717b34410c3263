"""Read the prepared split written by the `prepare` stage."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from model.preprocess import Preprocessing


@dataclass(frozen=True)
class Split:
    """Images, labels and file names of one part of the data set."""

    pixels: NDArray[np.uint8]
    labels: NDArray[np.int64]
    files: list[str]


@dataclass(frozen=True)
class PreparedData:
    """Both parts of the data set with their class names and preprocessing."""

    train: Split
    val: Split
    classes: list[str]
    preprocessing: Preprocessing


def _load_split(path: Path) -> Split:
    with np.load(path) as archive:
        return Split(archive["pixels"], archive["labels"], [str(f) for f in archive["files"]])


def load_prepared(folder: Path) -> PreparedData:
    """Load what `prepare` wrote into `folder`."""
    description = json.loads((folder / "dataset.json").read_text())
    return PreparedData(
        train=_load_split(folder / "train.npz"),
        val=_load_split(folder / "val.npz"),
        classes=list(description["classes"]),
        preprocessing=Preprocessing.from_metadata(description["preprocessing"]),
    )

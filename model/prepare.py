"""The `prepare` stage: a seeded, stratified train/validation split of resized images."""

import argparse
import json
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from model.params import load_params
from model.preprocess import Preprocessing

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


class DatasetError(ValueError):
    """The raw data set is missing or unusable."""


def discover(raw: Path) -> dict[str, list[Path]]:
    """Return the image files of each class folder of `raw`, sorted for reproducibility."""
    if not raw.is_dir():
        raise DatasetError(f"{raw} does not exist: run the 'generate' stage or add your data there")
    classes = {
        folder.name: sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for folder in sorted(raw.iterdir())
        if folder.is_dir()
    }
    classes = {name: files for name, files in classes.items() if files}
    if len(classes) < 2:
        raise DatasetError(f"{raw} needs at least two class folders with images, found {len(classes)}")
    return classes


def split(
    classes: dict[str, list[Path]], fraction: float, seed: int
) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Split each class by `fraction` into validation, the rest into training."""
    rng = np.random.default_rng(seed)
    train: list[tuple[Path, int]] = []
    val: list[tuple[Path, int]] = []
    for label, files in enumerate(classes.values()):
        order = rng.permutation(len(files))
        held_out = max(1, round(len(files) * fraction))
        val += [(files[i], label) for i in order[:held_out]]
        train += [(files[i], label) for i in order[held_out:]]
    return train, val


def load_images(
    items: list[tuple[Path, int]], prep: Preprocessing
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Load, convert and resize the images; return pixels and labels."""
    pixels = np.stack([prep.to_pixels(Image.open(path)) for path, _ in items])
    labels = np.array([label for _, label in items], dtype=np.int64)
    return pixels, labels


def prepare(raw: Path, out: Path, prep: Preprocessing, fraction: float, seed: int) -> None:
    """Write `train.npz`, `val.npz` and `dataset.json` into `out`."""
    classes = discover(raw)
    train, val = split(classes, fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, items in (("train", train), ("val", val)):
        pixels, labels = load_images(items, prep)
        names = np.array([str(path.relative_to(raw)) for path, _ in items])
        np.savez(out / f"{name}.npz", pixels=pixels, labels=labels, files=names)
    description = {"classes": list(classes), "preprocessing": prep.as_metadata()}
    (out / "dataset.json").write_text(json.dumps(description, indent=2) + "\n")


def main() -> None:
    """Run the stage with `params.yaml`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("data/prepared"))
    args = parser.parse_args()
    params = load_params("prepare")
    width, height = params["image_size"]
    prep = Preprocessing(int(width), int(height), bool(params["grayscale"]))
    prepare(args.raw, args.out, prep, float(params["split"]), int(params["seed"]))


if __name__ == "__main__":
    main()

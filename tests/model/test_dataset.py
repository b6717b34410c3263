"""The synthetic data set and its split: seeded, complete, recognisable."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model import CLASSES
from model.generate import generate, image_rng, render
from model.prepare import DatasetError, discover, prepare, split
from model.preprocess import Preprocessing


def test_same_seed_renders_the_same_image() -> None:
    first = render("Saturn", 128, image_rng(1, 7, 3))
    again = render("Saturn", 128, image_rng(1, 7, 3))
    other = render("Saturn", 128, image_rng(2, 7, 3))
    assert first.shape == (128, 128, 3)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def body_colour(body: str) -> np.ndarray:
    pixels = render(body, 64, image_rng(0, CLASSES.index(body), 0)).reshape(-1, 3).astype(float)
    lit = pixels[pixels.sum(axis=1) > 120]
    mean: np.ndarray = lit.mean(axis=0)
    return mean


def test_classes_differ_in_colour() -> None:
    means = {body: body_colour(body) for body in ("Neptune", "Mars")}
    assert means["Neptune"][2] > means["Neptune"][0] + 10  # blue
    assert means["Mars"][0] > means["Mars"][2] + 10  # red


def test_generate_writes_each_class_folder(tmp_path: Path) -> None:
    generate(tmp_path / "raw", seed=3, per_class=2, size=32)
    folders = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert folders == sorted(CLASSES)
    image = Image.open(tmp_path / "raw/Earth/earth_0001.png")
    assert image.size == (32, 32)
    assert image.mode == "RGB"


def test_split_is_seeded_and_stratified(tmp_path: Path) -> None:
    generate(tmp_path / "raw", seed=3, per_class=5, size=32)
    classes = discover(tmp_path / "raw")
    train, val = split(classes, fraction=0.2, seed=9)
    assert len(val) == 10
    assert len(train) == 40
    assert sorted(label for _, label in val) == list(range(10))
    assert split(classes, 0.2, 9) == (train, val)
    assert split(classes, 0.2, 10) != (train, val)


def test_prepare_writes_resized_arrays(tmp_path: Path) -> None:
    generate(tmp_path / "raw", seed=3, per_class=3, size=32)
    prepare(tmp_path / "raw", tmp_path / "out", Preprocessing(16, 16, grayscale=True), 0.34, seed=1)
    with np.load(tmp_path / "out/train.npz") as train:
        assert train["pixels"].shape == (20, 16, 16, 1)
        assert set(train["labels"]) == set(range(10))


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "nowhere")

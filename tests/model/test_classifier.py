"""The model's trip through the BentoML store and the exported `.bentomodel` file."""

from pathlib import Path

import bentoml
import numpy as np
import torch

from model import classifier as store
from model.network import Architecture, CelestialNet
from model.preprocess import Preprocessing
from model.train import export


def tiny_classifier() -> store.Classifier:
    torch.manual_seed(0)
    arch = Architecture(in_channels=3, conv_size=4, dense_size=8, output_classes=3)
    return store.Classifier(CelestialNet(arch).eval(), arch, ["a", "b", "c"], Preprocessing(16, 16, False))


def test_bentomodel_round_trip_gives_the_same_predictions(tmp_path: Path) -> None:
    original = tiny_classifier()
    pixels = np.random.default_rng(0).integers(0, 255, size=(4, 16, 16, 3), dtype=np.uint8)
    tag = store.save(original, {"device": "cpu"})
    exported = tmp_path / "classifier.bentomodel"
    export(tag, exported)
    bentoml.models.delete(tag)

    imported = store.import_bentomodel(exported)
    assert imported.tag == tag
    assert imported.info.metadata["classes"] == ["a", "b", "c"]
    assert imported.info.metadata["preprocessing"] == {"width": 16, "height": 16, "grayscale": False}
    loaded = store.load(imported.path)
    assert np.allclose(loaded.probabilities(pixels), original.probabilities(pixels))
    assert store.import_bentomodel(exported).tag == tag  # already in the store: no error


def test_describe_names_the_most_likely_class() -> None:
    answer = tiny_classifier().describe(np.array([0.1, 0.7, 0.2], dtype=np.float32))
    assert answer["prediction"] == "b"
    assert answer["probabilities"] == {"a": 0.1, "b": 0.7, "c": 0.2}

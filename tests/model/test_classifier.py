"""The model's trip through the BentoML store and the exported `.bentomodel` file."""

import io
from pathlib import Path

import bentoml
import numpy as np
import torch
from PIL import Image

from model import classifier as store
from model.images import ImageRejected
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


def trained_like_classifier() -> store.Classifier:
    """A classifier whose batch norms hold statistics and scales far from their defaults, as trained."""
    torch.manual_seed(1)
    arch = Architecture(in_channels=3, conv_size=8, dense_size=16, output_classes=3)
    network = CelestialNet(arch)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.2, 3.0)
            module.weight.data.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.5, 0.5)
    return store.Classifier(network.eval(), arch, ["a", "b", "c"], Preprocessing(32, 32, False))


def test_the_serving_copy_answers_as_the_trained_network_and_leaves_it_untouched() -> None:
    original = trained_like_classifier()
    pixels = np.random.default_rng(3).integers(0, 255, size=(6, 32, 32, 3), dtype=np.uint8)
    served = original.for_serving()
    assert np.allclose(served.probabilities(pixels), original.probabilities(pixels), atol=1e-5)
    assert served.channels_last and not original.channels_last
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in served.network.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in original.network.modules()) == 3
    # one image alone gets the row it gets in a batch
    assert np.allclose(served.probabilities(pixels[2:3])[0], served.probabilities(pixels)[2], atol=1e-6)


def png_bytes(color: tuple[int, int, int], size: int = 20) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_uploads_are_scored_in_order_and_a_bad_one_fails_only_itself() -> None:
    classifier = trained_like_classifier().for_serving()
    good = [png_bytes((200, 30, 30)), png_bytes((20, 200, 90)), png_bytes((10, 10, 250))]
    outcomes = classifier.score_uploads([good[0], b"not an image", good[1], b"", good[2]])
    rejections = [outcome for outcome in outcomes if isinstance(outcome, ImageRejected)]
    assert [str(r) for r in rejections] == [
        "the upload is not an image: send a PNG, JPEG or WebP image",
        "the upload is empty: send a PNG, JPEG or WebP image",
    ]
    assert isinstance(outcomes[1], ImageRejected) and isinstance(outcomes[3], ImageRejected)
    alone = [classifier.score_uploads([data])[0] for data in good]
    for together, single in zip([outcomes[0], outcomes[2], outcomes[4]], alone, strict=True):
        assert np.allclose(np.asarray(together), np.asarray(single), atol=1e-6)
    expected = classifier.classify([Image.open(io.BytesIO(data)) for data in good])
    assert [classifier.describe(np.asarray(o)) for o in (outcomes[0], outcomes[2], outcomes[4])] == expected


def test_only_bad_uploads_score_no_pass() -> None:
    outcomes = trained_like_classifier().score_uploads([b"", b"\x89PNG\r\n"])
    assert all(isinstance(outcome, ImageRejected) for outcome in outcomes)

"""The BentoML service that classifies images of celestial bodies."""

from http import HTTPStatus
from pathlib import Path
from typing import Any

import bentoml
import torch
from bentoml.exceptions import BentoMLException

from model import MODEL_NAME
from model.classifier import Classifier, load
from model.images import ImageRejected, decode

MAX_BATCH_FILES = 64


class BadImage(BentoMLException):
    """An upload rejected with a 4xx and the reason."""

    def __init__(self, rejection: ImageRejected) -> None:
        super().__init__(str(rejection))
        self.error_code = rejection.status


class TooManyImages(BentoMLException):
    """A batch over the limit."""

    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise BadImage(ImageRejected(f"the upload could not be read ({error})")) from error


@bentoml.service(
    name="celestial_bodies_classifier",
    workers=2,
    resources={"cpu": "2"},
    traffic={"timeout": 30, "max_concurrency": 256},
)
class CelestialBodiesClassifier:
    """Classify one image (`/predict`) or several (`/predict_batch`)."""

    bento_model = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        # Two workers share two cores: one intra-op thread each avoids oversubscription.
        torch.set_num_threads(1)
        self.classifier: Classifier | None = load(self.bento_model.path)

    def __is_ready__(self) -> bool:
        """Ready only once the model is loaded."""
        return self.classifier is not None

    def _classify(self, uploads: list[Path]) -> list[dict[str, Any]]:
        if self.classifier is None:
            raise BentoMLException("the model is not loaded yet")
        try:
            images = [decode(_read(path)) for path in uploads]
        except ImageRejected as rejection:
            raise BadImage(rejection) from rejection
        return self.classifier.classify(images)

    @bentoml.api(route="/predict")
    def predict(self, image: Path) -> dict[str, Any]:
        """Return the most likely body and the probability of each class."""
        return self._classify([image])[0]

    @bentoml.api(route="/predict_batch")
    def predict_batch(self, images: list[Path]) -> list[dict[str, Any]]:
        """Classify up to 64 images in one forward pass, in the order sent."""
        if not images:
            raise BadImage(ImageRejected("send at least one image"))
        if len(images) > MAX_BATCH_FILES:
            raise TooManyImages(f"at most {MAX_BATCH_FILES} images a request")
        return self._classify(images)

"""The BentoML service that classifies images of celestial bodies."""

import asyncio
from http import HTTPStatus
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException
from numpy.typing import NDArray

from model import MODEL_NAME
from model.batching import MicroBatcher
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


@bentoml.service(
    name="celestial_bodies_classifier",
    workers=1,
    traffic={"timeout": 30, "max_concurrency": 256},
)
class CelestialBodiesClassifier:
    """Classify one image (`/predict`, adaptively batched) or several (`/predict_batch`)."""

    bento_model = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        self.classifier: Classifier | None = load(self.bento_model.path)
        classifier = self.classifier
        self.batcher: MicroBatcher[NDArray[np.uint8], NDArray[np.float32]] = MicroBatcher(
            lambda images: list(classifier.probabilities(np.stack(images))), max_batch=32
        )

    def __is_ready__(self) -> bool:
        """Ready only once the model is loaded."""
        return self.classifier is not None

    def _pixels(self, uploads: list[Path]) -> NDArray[np.uint8]:
        if self.classifier is None:
            raise BentoMLException("the model is not loaded yet")
        try:
            images = [decode(path.read_bytes()) for path in uploads]
        except ImageRejected as rejection:
            raise BadImage(rejection) from rejection
        except OSError as error:
            raise BadImage(ImageRejected(f"the upload could not be read ({error})")) from error
        return np.stack([self.classifier.preprocessing.to_pixels(image) for image in images])

    @bentoml.api(route="/predict")
    async def predict(self, image: Path) -> dict[str, Any]:
        """Return the most likely body and the probability of each class."""
        pixels = await asyncio.to_thread(self._pixels, [image])
        scores = await self.batcher.submit(pixels[0])
        assert self.classifier is not None
        return self.classifier.describe(scores)

    @bentoml.api(route="/predict_batch")
    def predict_batch(self, images: list[Path]) -> list[dict[str, Any]]:
        """Classify up to 64 images in one forward pass, in the order sent."""
        if not images:
            raise BadImage(ImageRejected("send at least one image"))
        if len(images) > MAX_BATCH_FILES:
            raise TooManyImages(f"at most {MAX_BATCH_FILES} images a request")
        pixels = self._pixels(images)
        assert self.classifier is not None
        return [self.classifier.describe(row) for row in self.classifier.probabilities(pixels)]

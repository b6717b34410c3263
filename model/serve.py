"""The BentoML service that classifies images of celestial bodies.

The model loads in a background thread, so the server answers at once: `/readyz` says 503 and
the predict endpoints say 503 (with the reason) until the model is loaded.
"""

import asyncio
import logging
import threading
from http import HTTPStatus
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException
from numpy.typing import NDArray
from starlette.responses import JSONResponse

from model import MODEL_NAME
from model.batching import MicroBatcher
from model.classifier import Classifier, load
from model.images import ImageRejected, decode

MAX_BATCH_FILES = 64
RETRY_AFTER_S = 5

logger = logging.getLogger(__name__)


class BadImage(BentoMLException):
    """An upload rejected with a 4xx and the reason."""

    def __init__(self, rejection: ImageRejected) -> None:
        super().__init__(str(rejection))
        self.error_code = rejection.status


class TooManyImages(BentoMLException):
    """A batch over the limit."""

    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class ModelNotReady(BentoMLException):
    """The model is still loading, or failed to load: the service cannot predict."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, message: str, loading: bool) -> None:
        super().__init__(message)
        self.loading = loading

    def response(self) -> JSONResponse:
        """Answer the 503 with the reason: BentoML replaces the message of any 5xx it catches."""
        headers = {"Retry-After": str(RETRY_AFTER_S)} if self.loading else None
        return JSONResponse({"error": str(self)}, status_code=self.error_code, headers=headers)


@bentoml.service(
    name="celestial_bodies_classifier",
    workers=1,
    traffic={"timeout": 30, "max_concurrency": 256},
)
class CelestialBodiesClassifier:
    """Classify one image (`/predict`, adaptively batched) or several (`/predict_batch`)."""

    bento_model = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        self.classifier: Classifier | None = None
        self.load_error: Exception | None = None
        self.batcher: MicroBatcher[NDArray[np.uint8], NDArray[np.float32]] = MicroBatcher(
            lambda images: list(self._loaded().probabilities(np.stack(images))), max_batch=32
        )
        self.loader = threading.Thread(target=self._load, name="load-model", daemon=True)
        self.loader.start()

    def _load_classifier(self) -> Classifier:
        """Load the model from the BentoML store (slow: the seconds `/readyz` answers 503)."""
        return load(self.bento_model.path)

    def _load(self) -> None:
        """Load the model, or log why not; runs in `self.loader`."""
        try:
            classifier = self._load_classifier()
        except Exception as error:
            logger.exception("the model failed to load; the service stays unready")
            self.load_error = error
            return
        self.classifier = classifier
        logger.info("the model is loaded; the service is ready")

    def __is_ready__(self) -> bool:
        """Ready only once the model is loaded."""
        return self.classifier is not None

    def _loaded(self) -> Classifier:
        """Return the classifier, or raise `ModelNotReady` saying why there is none."""
        if self.classifier is not None:
            return self.classifier
        if self.load_error is not None:
            raise ModelNotReady(f"the model failed to load ({self.load_error})", loading=False)
        raise ModelNotReady("the model is still loading; retry once /readyz answers 200", loading=True)

    def _pixels(self, classifier: Classifier, uploads: list[Path]) -> NDArray[np.uint8]:
        try:
            images = [decode(path.read_bytes()) for path in uploads]
        except ImageRejected as rejection:
            raise BadImage(rejection) from rejection
        except OSError as error:
            raise BadImage(ImageRejected(f"the upload could not be read ({error})")) from error
        return np.stack([classifier.preprocessing.to_pixels(image) for image in images])

    @bentoml.api(route="/predict")
    async def predict(self, image: Path) -> dict[str, Any]:
        """Return the most likely body and the probability of each class."""
        try:
            classifier = self._loaded()
        except ModelNotReady as refusal:
            return refusal.response()  # type: ignore[return-value]  # BentoML sends a Response as is
        pixels = await asyncio.to_thread(self._pixels, classifier, [image])
        scores = await self.batcher.submit(pixels[0])
        return classifier.describe(scores)

    @bentoml.api(route="/predict_batch")
    def predict_batch(self, images: list[Path]) -> list[dict[str, Any]]:
        """Classify up to 64 images in one forward pass, in the order sent."""
        if not images:
            raise BadImage(ImageRejected("send at least one image"))
        if len(images) > MAX_BATCH_FILES:
            raise TooManyImages(f"at most {MAX_BATCH_FILES} images a request")
        try:
            classifier = self._loaded()
        except ModelNotReady as refusal:
            return refusal.response()  # type: ignore[return-value]  # BentoML sends a Response as is
        pixels = self._pixels(classifier, images)
        return [classifier.describe(row) for row in classifier.probabilities(pixels)]

"""The BentoML service that classifies images of celestial bodies.

The model loads in a background thread, so the server answers at once: `/readyz` says 503 and
the predict endpoints say 503 (with the reason) until the model is loaded.

With `MODEL_API_KEY` set, every request but the probes and `/metrics` must carry that key
(`Authorization: Bearer <key>` or `X-API-Key: <key>`), or is refused with 401 (`ApiKeyMiddleware`);
a WebSocket without it is closed before it is accepted, with 1008 (policy violation).
"""

import asyncio
import hmac
import logging
import os
import threading
from http import HTTPStatus
from pathlib import Path
from typing import Any, cast

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException
from numpy.typing import NDArray
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.status import WS_1008_POLICY_VIOLATION, WS_1013_TRY_AGAIN_LATER
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from model import MODEL_NAME
from model.batching import MicroBatcher
from model.classifier import Classifier, load
from model.images import ImageRejected, decode

MAX_BATCH_FILES = 64
RETRY_AFTER_S = 5
API_KEY_ENV = "MODEL_API_KEY"  # unset: the endpoint is open
OPEN_PATHS = frozenset({"/readyz", "/livez", "/healthz", "/metrics"})  # what probes and scrapers ask
CHECKED_SCOPES = frozenset({"http", "websocket"})  # every request; `lifespan` is the server's own

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


def api_key_from_environment() -> str | None:
    """Return the key callers must send, or None when none is configured (the endpoint is open)."""
    value = os.environ.get(API_KEY_ENV)
    return None if value is None else value.strip()  # a key file's trailing newline is no part of it


def presented_key(headers: Headers) -> str | None:
    """Return the key a request carries, as a bearer token or in `X-API-Key`, or None."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key")


def key_refusal(expected: str | None, presented: str | None) -> JSONResponse | None:
    """Return the answer to a request without the right key, or None when it may pass."""
    if expected is None:
        return None
    if not expected:
        message = f"{API_KEY_ENV} is set but empty: the service refuses every request until it holds a key"
        return JSONResponse({"error": message}, status_code=HTTPStatus.SERVICE_UNAVAILABLE)
    if presented is None:
        message = "this endpoint needs an API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
    elif hmac.compare_digest(presented.encode(), expected.encode()):
        return None
    else:
        message = "the API key is not valid"
    headers = {"WWW-Authenticate": 'Bearer realm="model"'}
    return JSONResponse({"error": message}, status_code=HTTPStatus.UNAUTHORIZED, headers=headers)


class ApiKeyMiddleware:
    """Let a request through only with the service's API key, if it has one; probes and metrics always.

    HTTP requests and WebSockets alike: a WebSocket without the key is closed before it is accepted
    (1008, policy violation; the client sees its upgrade refused with 403). The key is the running
    service's (`api_key`, read once when it starts): a request that comes before there is a service is
    refused.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a request or WebSocket that lacks the key, pass anything else (the lifespan) on."""
        if scope["type"] not in CHECKED_SCOPES or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        try:
            expected = bentoml.get_current_service().api_key
        except BentoMLException:  # no service yet (or any more): nothing it serves may be asked
            starting = {"error": "the service is not running yet"}
            refused: ASGIApp = (
                WebSocketClose(WS_1013_TRY_AGAIN_LATER, starting["error"])
                if websocket
                else JSONResponse(starting, status_code=HTTPStatus.SERVICE_UNAVAILABLE)
            )
            await refused(scope, receive, send)
            return
        refusal = key_refusal(expected, presented_key(Headers(scope=scope)))
        if refusal is not None and websocket:
            await WebSocketClose(WS_1008_POLICY_VIOLATION, "this endpoint needs a valid API key")(
                scope, receive, send
            )
            return
        await (refusal or self.app)(scope, receive, send)


@bentoml.service(
    name="celestial_bodies_classifier",
    workers=1,
    traffic={"timeout": 30, "max_concurrency": 256},
)
class CelestialBodiesClassifier:
    """Classify one image (`/predict`, adaptively batched) or several (`/predict_batch`)."""

    bento_model = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        self.api_key = api_key_from_environment()
        if self.api_key == "":
            logger.error("%s is set but empty: every request but the probes is refused", API_KEY_ENV)
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


# `@bentoml.service` made the class a `bentoml.Service`; mypy sees the plain class (bentoml is untyped).
cast(Any, CelestialBodiesClassifier).add_asgi_middleware(ApiKeyMiddleware)

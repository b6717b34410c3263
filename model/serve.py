"""The BentoML service that classifies images of celestial bodies.

The model loads in a background thread. Each worker waits up to `STARTUP_WAIT_S` for it before it
takes connections (with several workers, one still loading would otherwise answer 503 while the
others are ready); a load that takes longer goes on while the server answers: `/readyz` says 503 and
the predict endpoints say 503 (with the reason) until the model is loaded.

With `MODEL_API_KEY` set, every request but the probes and `/metrics` must carry that key
(`Authorization: Bearer <key>` or `X-API-Key: <key>`), or is refused with 401 (`ApiKeyMiddleware`);
a WebSocket without it is closed before it is accepted, with 1008 (policy violation).

`GET /metadata` answers where the model came from: the commit, the hashes of the DVC outputs, the
params, the metrics and the training report's link, as `deploy.build` wrote them into the Bento
(`model/metadata.json`). It asks for the same key as `/predict`: none of it is secret, but a private
repository's params, metrics and report link are its organisation's. A Bento without the file (or
with one that cannot be read) answers 200 with `"provenance": "unknown"`, the reason, and nulls.

`POST /predict` (one image, in the form field `image`) is a plain Starlette route rather than a
`@bentoml.api`: BentoML's IO layer wrote each upload to a temporary file and built its JSON schema
again for every answer: a fifth of the CPU a request took, in a profile under load. Uploads that
arrive together are decoded, preprocessed and classified in one hop to a thread, in one forward pass
(`MicroBatcher`); a lone request waits for nothing. BentoML's own adaptive batching
(`batchable=True`) holds a lone request back for a batch, and served fewer requests a second at
every concurrency (`bench/serve.py`).
The service runs one worker process a core (`MODEL_WORKERS`), one torch thread each, and the model
as `Classifier.for_serving` makes it (batch norms folded, channels-last): about three times faster.
"""

import hmac
import json
import logging
import os
import threading
from http import HTTPStatus
from pathlib import Path
from typing import Any, cast

import bentoml
import numpy as np
import torch
from bentoml.exceptions import BentoMLException
from numpy.typing import NDArray
from starlette.applications import Starlette
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.status import WS_1008_POLICY_VIOLATION, WS_1013_TRY_AGAIN_LATER
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from model import MODEL_NAME
from model.batching import MicroBatcher
from model.classifier import Classifier, load
from model.images import MAX_UPLOAD_BYTES, ImageRejected, decode

MAX_BATCH_FILES = 64
UPLOAD_FIELD = "image"  # `POST /predict` takes one file, in this form field
MAX_FORM_OVERHEAD = 64 * 1024  # a form's boundaries and part headers around the file
WORKERS_ENV = "MODEL_WORKERS"  # unset: one worker a usable core, at most DEFAULT_MAX_WORKERS
# Each worker holds its own torch and model (about 300 MB): two fit the Deployment's 2 GiB limit.
DEFAULT_MAX_WORKERS = 2
# One torch thread a worker: the workers take the cores. OpenMP threads that share a core with another
# worker (or anything else) wait for each other at every layer: a forward pass took 30 times as long.
TORCH_THREADS = 1
RETRY_AFTER_S = 5
STARTUP_WAIT_S = 30.0  # how long a worker waits for its model before it serves (503s) without it
API_KEY_ENV = "MODEL_API_KEY"  # unset: the endpoint is open
OPEN_PATHS = frozenset({"/readyz", "/livez", "/healthz", "/metrics"})  # what probes and scrapers ask
CHECKED_SCOPES = frozenset({"http", "websocket"})  # every request; `lifespan` is the server's own
# deploy.build writes it before `bentoml build`, which takes it in (bentofile.yaml includes it)
METADATA_FILE = Path(__file__).with_name("metadata.json")
METADATA_FIELDS = ("sha", "clean", "dvc_lock", "params", "metrics", "report_url")
MAX_METADATA_BYTES = 4 * 1024 * 1024

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


def usable_cores() -> int:
    """Return how many cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


def workers_from_environment() -> int:
    """Return how many worker processes to serve with: `MODEL_WORKERS`, or one a usable core (at most 2)."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if not value:
        return min(DEFAULT_MAX_WORKERS, usable_cores())
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{WORKERS_ENV} must be a whole number of workers, 1 or more, not {value!r}")
    return int(value)


WORKERS = workers_from_environment()
USABLE_CORES = usable_cores()


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


def unknown_provenance(reason: str) -> dict[str, Any]:
    """Return what `/metadata` answers for a Bento whose provenance is unknown: the reason and nulls."""
    return {"provenance": "unknown", "reason": reason, **dict.fromkeys(METADATA_FIELDS)}


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Python reads them, a JSON client cannot


def read_metadata(path: Path) -> dict[str, Any]:
    """Return what `/metadata` answers: the recorded provenance, or why it is unknown. Never raises."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_METADATA_BYTES + 1)
        if len(data) > MAX_METADATA_BYTES:
            return unknown_provenance(f"{path.name} is over {MAX_METADATA_BYTES} bytes")
        recorded = json.loads(data, parse_constant=_no_constant)
    except FileNotFoundError:
        return unknown_provenance(f"this Bento holds no {path.name}: it was not built by `deploy.build`")
    except (OSError, ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        return unknown_provenance(f"{path.name} cannot be read ({error})")
    if not isinstance(recorded, dict):
        return unknown_provenance(f"{path.name} is not a JSON object")
    return {"provenance": "recorded", **{field: recorded.get(field) for field in METADATA_FIELDS}}


async def read_upload(request: Request) -> bytes:
    """Return the file of a `multipart/form-data` request's `image` field, or raise `ImageRejected`."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_UPLOAD_BYTES + MAX_FORM_OVERHEAD:
        raise ImageRejected(
            f"the upload is over {MAX_UPLOAD_BYTES} bytes", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        )
    if request.headers.get("content-type", "").partition(";")[0].strip() != "multipart/form-data":
        raise ImageRejected(
            f"send the image as multipart/form-data, in the field `{UPLOAD_FIELD}`",
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        )
    try:
        async with request.form(max_files=1, max_fields=16) as form:
            upload = form.get(UPLOAD_FIELD)
            if isinstance(upload, UploadFile):
                if (upload.size or 0) > MAX_UPLOAD_BYTES:  # sent without a length: spooled to disk, not read
                    raise ImageRejected(
                        f"the upload is over {MAX_UPLOAD_BYTES} bytes", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
                    )
                return await upload.read()
    except HTTPException as error:  # Starlette's answer to a malformed form, or one over the limits
        raise ImageRejected(f"the form cannot be read ({error.detail})") from error
    raise ImageRejected(f"send the image as a file in the form field `{UPLOAD_FIELD}`")


async def predict(request: Request) -> Response:
    """`POST /predict`: classify one image (adaptively batched with those sent at the same time)."""
    service: CelestialBodiesClassifier = bentoml.get_current_service()
    return await service.answer_upload(request)


async def metadata(request: Request) -> JSONResponse:
    """`GET /metadata`: the running service's provenance, as it read it when it started.

    `ApiKeyMiddleware` has answered any request that comes while there is no service.
    """
    return JSONResponse(bentoml.get_current_service().metadata)


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
    workers=WORKERS,
    traffic={"timeout": 30, "max_concurrency": 256},
    # A log line a request, and a tracing span a request even unsampled, cost /predict a third of its
    # throughput (bench/serve.py); requests, latency and statuses are still counted in /metrics.
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/predict"]},
)
class CelestialBodiesClassifier:
    """Classify one image (`/predict`, adaptively batched) or several (`/predict_batch`)."""

    bento_model = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        torch.set_num_threads(TORCH_THREADS)
        self.api_key = api_key_from_environment()
        if self.api_key == "":
            logger.error("%s is set but empty: every request but the probes is refused", API_KEY_ENV)
        self.metadata = read_metadata(METADATA_FILE)
        if self.metadata["provenance"] != "recorded":
            logger.warning("/metadata answers nulls: %s", self.metadata["reason"])
        self.classifier: Classifier | None = None
        self.load_error: Exception | None = None
        # Decode, preprocess and forward pass in one hop to a thread for all the uploads that wait.
        # The kernel hands connections to workers unevenly (26 and 6 of 32, measured): a batch in flight
        # a core lets the worker that holds most of them keep every core busy.
        self.batcher: MicroBatcher[bytes, NDArray[np.float32] | ImageRejected] = MicroBatcher(
            lambda uploads: self._loaded().score_uploads(uploads),
            max_batch=MAX_BATCH_FILES,
            parallel=USABLE_CORES,
        )
        self.loader = threading.Thread(target=self._load, name="load-model", daemon=True)
        self.loader.start()
        # A worker takes no connection before this returns: waiting for a quick load keeps a worker
        # that is still loading from answering 503 while its siblings are ready. A slow one goes on.
        self.loader.join(STARTUP_WAIT_S)

    def _load_classifier(self) -> Classifier:
        """Load the model from the BentoML store (slow: the seconds `/readyz` answers 503)."""
        return load(self.bento_model.path)

    def _load(self) -> None:
        """Load the model, or log why not; runs in `self.loader`."""
        try:
            classifier = self._load_classifier().for_serving()
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

    async def answer_upload(self, request: Request) -> Response:
        """Answer `POST /predict`: the one image of the form's `image` field, classified."""
        try:
            classifier = self._loaded()
        except ModelNotReady as refusal:
            return refusal.response()
        try:
            outcome = await self.batcher.submit(await read_upload(request))
        except ImageRejected as rejection:
            outcome = rejection
        if isinstance(outcome, ImageRejected):
            return JSONResponse({"error": str(outcome)}, status_code=outcome.status)
        return JSONResponse(classifier.describe(outcome))

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
# Mounted at the root, BentoML matches it only where none of its routes matches: `GET /metadata` and
# `POST /predict`. Behind the middleware like every route, so they ask for the key.
cast(Any, CelestialBodiesClassifier).mount_asgi_app(
    Starlette(
        routes=[
            Route("/metadata", metadata, methods=["GET"]),
            Route("/predict", predict, methods=["POST"]),
        ]
    ),
    path="/",
    name="routes",
)

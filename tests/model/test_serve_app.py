"""The BentoML service's real ASGI app, in this process, with the model's loading stood in for.

`CelestialBodiesClassifier.to_asgi()` is the app `bentoml serve` runs, lifespan and the API key check
included, so these tests see the statuses and bodies a client would. Only `_load_classifier` is
replaced: by a stand-in that blocks until the test lets it return a tiny classifier, or raise.
"""

import functools
import io
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bentoml
import httpx
import numpy as np
import pytest
import torch
from bentoml.exceptions import BentoMLException
from PIL import Image
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.status import WS_1008_POLICY_VIOLATION
from starlette.websockets import WebSocket, WebSocketDisconnect

from deploy.manifests import API_KEY_ENV as DEPLOYED_KEY_ENV
from model import CLASSES, serve
from model.classifier import Classifier
from model.network import Architecture, CelestialNet
from model.preprocess import Preprocessing
from model.serve import API_KEY_ENV, ApiKeyMiddleware, CelestialBodiesClassifier

# BentoML's own request parsing uses pydantic APIs deprecated in 2.11: not ours to act on.
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")

WAIT_S = 30
# `@bentoml.service` made the class a `bentoml.Service`; mypy sees the plain class (bentoml is untyped).
SERVICE: Any = CelestialBodiesClassifier


class MeanColourNet(CelestialNet):
    """A stand-in network: its logits follow the mean colour, so unlike colours answer far apart."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__(arch)
        self.mixing = torch.randn(3, arch.output_classes, generator=torch.Generator().manual_seed(0))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = 2 * batch.mean(dim=(2, 3)) @ self.mixing
        return logits


def tiny_classifier() -> Classifier:
    arch = Architecture(in_channels=3, conv_size=4, dense_size=8, output_classes=len(CLASSES))
    return Classifier(MeanColourNet(arch).eval(), arch, list(CLASSES), Preprocessing(16, 16, False))


class StandInLoad:
    """Replaces loading the model: blocks until `finish()`, then returns the classifier or raises."""

    def __init__(self, outcome: Classifier | Exception) -> None:
        self.outcome = outcome
        self.gate = threading.Event()
        self.started = threading.Event()
        self.services: list[Any] = []

    def finish(self) -> None:
        """Let the load end, and wait until the service has taken its outcome."""
        assert self.started.wait(WAIT_S), "the service never started loading the model"
        self.gate.set()
        loader: threading.Thread = self.services[0].loader
        loader.join(WAIT_S)
        assert not loader.is_alive(), "the loader thread did not finish"

    def method(self) -> Callable[[Any], Classifier]:
        def load(service: Any) -> Classifier:
            self.services.append(service)
            self.started.set()
            if not self.gate.wait(WAIT_S):
                raise TimeoutError("the test never let the model load")
            if isinstance(self.outcome, Exception):
                raise self.outcome
            return self.outcome

        return load


Install = Callable[[Classifier | Exception], StandInLoad]


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    made: list[StandInLoad] = []
    monkeypatch.setattr(serve, "STARTUP_WAIT_S", 0)  # these loads block until the test lets them end

    def install(outcome: Classifier | Exception) -> StandInLoad:
        loading = StandInLoad(outcome)
        monkeypatch.setattr(SERVICE.inner, "_load_classifier", loading.method())
        made.append(loading)
        return loading

    yield install
    for loading in made:
        loading.gate.set()  # never leave a loader thread blocked


@functools.cache
def asgi_app() -> Starlette:
    """The app `bentoml serve` runs; built once, as its metrics may be registered only once a process."""
    built = SERVICE.to_asgi()
    assert isinstance(built, Starlette)
    return built


@asynccontextmanager
async def served() -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan, which creates a new service instance, and return a client of it."""
    app = asgi_app()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://service") as client,
    ):
        yield client


def png(color: tuple[int, int, int], size: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def distinct_pngs(count: int) -> list[bytes]:
    colors = np.random.default_rng(7).integers(0, 256, size=(count, 3))
    return [png((int(r), int(g), int(b))) for r, g, b in colors]


def batch_files(images: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]


async def predict(client: httpx.AsyncClient, data: bytes) -> httpx.Response:
    return await client.post("/predict", files={"image": ("x.png", data, "image/png")})


async def test_unready_and_refusing_with_503_until_the_model_loads_then_serving(
    stand_in: Install,
) -> None:
    """While the model loads, /readyz and both predict endpoints answer 503 (predict saying why,
    with Retry-After); once it has loaded, /readyz and /predict answer 200 with a prediction."""
    loading = stand_in(tiny_classifier())
    async with served() as client:
        assert (await client.get("/livez")).status_code == 200  # the server itself is up
        assert (await client.get("/readyz")).status_code == 503

        refused = await predict(client, png((200, 40, 40)))
        assert refused.status_code == 503
        assert refused.json() == {"error": "the model is still loading; retry once /readyz answers 200"}
        assert refused.headers["Retry-After"].isdigit()

        refused = await client.post("/predict_batch", files=batch_files(distinct_pngs(2)))
        assert refused.status_code == 503
        assert "the model is still loading" in refused.json()["error"]

        loading.finish()
        assert (await client.get("/readyz")).status_code == 200
        answer = await predict(client, png((200, 40, 40)))
        assert answer.status_code == 200, answer.text
        assert answer.json()["prediction"] in CLASSES
        assert set(answer.json()["probabilities"]) == set(CLASSES)
        assert sum(answer.json()["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


async def test_a_failed_load_is_logged_and_the_service_stays_unready_saying_so(
    stand_in: Install, caplog: pytest.LogCaptureFixture
) -> None:
    """When loading raises, the error is logged with its traceback, /readyz keeps answering 503
    and the predict endpoints answer 503 saying the model failed to load, and why."""
    loading = stand_in(OSError("weights.pt is missing"))
    with caplog.at_level(logging.ERROR, logger="model.serve"):
        async with served() as client:
            loading.finish()
            assert (await client.get("/readyz")).status_code == 503

            refused = await predict(client, png((0, 0, 255)))
            assert refused.status_code == 503
            assert refused.json() == {"error": "the model failed to load (weights.pt is missing)"}
            assert "Retry-After" not in refused.headers

            refused = await client.post("/predict_batch", files=batch_files(distinct_pngs(1)))
            assert refused.status_code == 503
            assert "the model failed to load" in refused.json()["error"]

    failures = [r for r in caplog.records if r.name == "model.serve" and r.levelno == logging.ERROR]
    assert len(failures) == 1
    assert "failed to load" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], OSError)


async def test_batch_of_64_answers_64_results_in_the_order_sent(
    stand_in: Install,
) -> None:
    """README: `POST /predict_batch` takes up to 64 files and answers a list: exactly 64 answers,
    the n-th being the single /predict answer for the n-th file sent."""
    loading = stand_in(tiny_classifier())
    images = distinct_pngs(64)
    async with served() as client:
        loading.finish()
        response = await client.post("/predict_batch", files=batch_files(images))
        assert response.status_code == 200, response.text
        answers = response.json()
        assert isinstance(answers, list)
        assert len(answers) == 64
        singles = [(await predict(client, data)).json() for data in images]

    for answer, single in zip(answers, singles, strict=True):
        assert answer["prediction"] == single["prediction"]
        assert answer["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)
    # The images are told apart by the network, so a reordered answer could not pass the above.
    vectors = np.array([list(a["probabilities"].values()) for a in answers])
    nearest = min(np.abs(vectors[i] - vectors[j]).max() for i in range(64) for j in range(i))
    assert nearest > 1e-3


async def test_batch_over_64_files_is_refused_with_413_naming_the_cap(
    stand_in: Install,
) -> None:
    """README caps a batch at 64 files: 65 get a 413 whose reason names the cap."""
    loading = stand_in(tiny_classifier())
    async with served() as client:
        loading.finish()
        response = await client.post("/predict_batch", files=batch_files(distinct_pngs(65)))
    assert response.status_code == 413
    assert "at most 64 images a request" in response.text


async def test_empty_batch_is_a_400_with_the_reason(
    stand_in: Install,
) -> None:
    """No files at all (a form without `images`, or no body): 400 naming the missing `images`
    field; an explicitly empty list: 400 "send at least one image"."""
    loading = stand_in(tiny_classifier())
    async with served() as client:
        loading.finish()
        for empty in (
            await client.post("/predict_batch", files={"note": (None, "no files")}),
            await client.post("/predict_batch"),
        ):
            assert empty.status_code == 400
            assert empty.json()["detail"][0]["loc"] == ["images"]
            assert empty.json()["detail"][0]["msg"] == "Field required"
        listed = await client.post("/predict_batch", json={"images": []})
    assert listed.status_code == 400
    assert "send at least one image" in listed.text


KEY = "s3cret-key"


async def test_with_a_key_every_inference_endpoint_asks_for_it_and_the_probes_stay_open(
    stand_in: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MODEL_API_KEY set: no key or a wrong one gets 401 saying how to send it; the key as a
    bearer token or in X-API-Key gets the prediction; /readyz, /livez and /healthz need none."""
    monkeypatch.setenv(API_KEY_ENV, KEY + "\n")  # as a Secret made from a file holds it
    loading = stand_in(tiny_classifier())
    async with served() as client:
        loading.finish()
        refused = await predict(client, png((10, 20, 30)))
        assert refused.status_code == 401
        how = "send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
        assert refused.json() == {"error": f"this endpoint needs an API key: {how}"}
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        for wrong in ({"Authorization": "Bearer nope"}, {"X-API-Key": KEY[:-1]}, {"X-API-Key": KEY + "x"}):
            answer = await client.post(
                "/predict", files={"image": ("x.png", png((1, 2, 3)), "image/png")}, headers=wrong
            )
            assert (answer.status_code, answer.json()) == (401, {"error": "the API key is not valid"}), wrong
        assert (await client.post("/predict_batch", files=batch_files(distinct_pngs(2)))).status_code == 401
        assert (await client.get("/docs.json")).status_code == 401, "everything but the probes asks for it"
        for right in (
            {"Authorization": f"Bearer {KEY}"},
            {"authorization": f"bearer {KEY}"},
            {"X-API-Key": KEY},
        ):
            answer = await client.post(
                "/predict", files={"image": ("x.png", png((1, 2, 3)), "image/png")}, headers=right
            )
            assert answer.status_code == 200, (right, answer.text)
            assert answer.json()["prediction"] in CLASSES
        for probe in ("/readyz", "/livez", "/healthz"):
            assert (await client.get(probe)).status_code == 200, probe


async def test_without_a_key_the_endpoint_is_open(stand_in: Install, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    loading = stand_in(tiny_classifier())
    async with served() as client:
        loading.finish()
        answer = await predict(client, png((10, 20, 30)))
    assert answer.status_code == 200, answer.text


async def test_an_empty_key_refuses_everything_but_the_probes(
    stand_in: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key that is set but empty (an empty Secret) must not leave the endpoint open."""
    monkeypatch.setenv(API_KEY_ENV, " \n")
    loading = stand_in(tiny_classifier())
    async with served() as client:
        loading.finish()
        refused = await client.post(
            "/predict", files={"image": ("x.png", png((1, 2, 3)), "image/png")}, headers={"X-API-Key": ""}
        )
        assert refused.status_code == 503
        assert "MODEL_API_KEY is set but empty" in refused.json()["error"]
        assert (await client.get("/readyz")).status_code == 200


def test_the_deployment_passes_the_key_under_the_name_the_service_reads() -> None:
    assert DEPLOYED_KEY_ENV == API_KEY_ENV == "MODEL_API_KEY"


# --- WebSockets: the key is asked of them too ---


def websocket_app(monkeypatch: pytest.MonkeyPatch, key: str | None, running: bool = True) -> Starlette:
    """Return a test app with one WebSocket route behind the middleware, as the running service with `key`."""

    def current() -> Any:
        if not running:
            raise BentoMLException("no service")
        return SimpleNamespace(api_key=key)

    monkeypatch.setattr(bentoml, "get_current_service", current)

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("open")
        await websocket.close()

    return Starlette(routes=[WebSocketRoute("/ws", echo)], middleware=[Middleware(ApiKeyMiddleware)])


def refused_with(app: Starlette, headers: dict[str, str]) -> int | None:
    """Return the close code of a WebSocket refused before it is accepted, or None when it was accepted."""
    from starlette.testclient import TestClient  # here: importing it warns that it still uses httpx

    with TestClient(app) as client:
        try:
            with client.websocket_connect("/ws", headers=dict(headers)) as websocket:
                assert websocket.receive_text() == "open"
        except WebSocketDisconnect as closed:
            return closed.code
    return None


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_a_websocket_without_the_key_is_closed_before_it_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reviewer's attack (F8): a WebSocket scope went past the key check. Now it is refused with 1008
    without the key or with a wrong one; with the key it opens; without a key configured it is open."""
    app = websocket_app(monkeypatch, KEY)
    for wrong in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": KEY + "x"}):
        assert refused_with(app, wrong) == WS_1008_POLICY_VIOLATION, wrong
    for right in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
        assert refused_with(app, right) is None, right
    assert refused_with(websocket_app(monkeypatch, ""), {"X-API-Key": ""}) == WS_1008_POLICY_VIOLATION
    assert refused_with(websocket_app(monkeypatch, None), {}) is None, "no key configured: open"
    assert refused_with(websocket_app(monkeypatch, KEY, running=False), {"X-API-Key": KEY}) == 1013


# --- GET /metadata: the provenance deploy.build wrote into the Bento ---

RECORDED = {
    "sha": "c" * 40,
    "clean": True,
    "dvc_lock": {"train": {"model/classifier.bentomodel": "391e3687b996bd6ec79cdb4fde232275"}},
    "params": {"train": {"lr": 0.002, "epochs": 12}},
    "metrics": {"val_acc": 0.9633},
    "report_url": "https://github.com/octo/model/pull/7#issuecomment-1",
}


@pytest.fixture
def metadata_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the service at a metadata.json in `tmp_path` (not written: each test writes its own)."""
    path = tmp_path / "metadata.json"
    monkeypatch.setattr(serve, "METADATA_FILE", path)
    return path


async def test_metadata_answers_the_recorded_provenance_behind_the_key(
    stand_in: Install, monkeypatch: pytest.MonkeyPatch, metadata_file: Path
) -> None:
    """/metadata answers the file's document as recorded, whether or not the model has loaded yet;
    with a key configured it asks for it like /predict, and the probes stay open."""
    metadata_file.write_text(json.dumps(RECORDED))
    monkeypatch.setenv(API_KEY_ENV, KEY)
    stand_in(tiny_classifier())  # never finishes loading: /metadata needs no model
    async with served() as client:
        refused = await client.get("/metadata")
        answer = await client.get("/metadata", headers={"X-API-Key": KEY})
        assert (await client.get("/livez")).status_code == 200
    assert refused.status_code == 401
    assert "needs an API key" in refused.json()["error"]
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"provenance": "recorded", **RECORDED}


async def test_metadata_without_a_file_answers_unknown_and_nulls_and_the_service_predicts(
    stand_in: Install, monkeypatch: pytest.MonkeyPatch, metadata_file: Path
) -> None:
    """A Bento built without deploy.build holds no metadata.json: 200, "unknown", why, and each field
    null; the service starts and predicts as ever."""
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    loading = stand_in(tiny_classifier())
    async with served() as client:
        loading.finish()
        answer = await client.get("/metadata")
        predicted = await predict(client, png((9, 9, 9)))
        posted = await client.post("/metadata")
    assert answer.status_code == 200
    assert answer.json() == {
        "provenance": "unknown",
        "reason": "this Bento holds no metadata.json: it was not built by `deploy.build`",
        **dict.fromkeys(["sha", "clean", "dvc_lock", "params", "metrics", "report_url"]),
    }
    assert predicted.status_code == 200
    assert posted.status_code == 405, "a GET endpoint"


async def test_metadata_that_cannot_be_read_answers_unknown_saying_why(
    stand_in: Install, monkeypatch: pytest.MonkeyPatch, metadata_file: Path
) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    metadata_file.write_text('{"sha": "c')
    stand_in(tiny_classifier())
    async with served() as client:
        answer = await client.get("/metadata")
    assert answer.status_code == 200
    assert answer.json()["provenance"] == "unknown" and answer.json()["sha"] is None
    assert answer.json()["reason"].startswith("metadata.json cannot be read (Unterminated string")


BAD_METADATA = {
    "not JSON": (b"sha: c\n", "cannot be read"),
    "NaN, which a JSON client cannot read": (b'{"metrics": {"val_loss": NaN}}', "NaN is not JSON"),
    "a list": (b"[1, 2]", "not a JSON object"),
    "not UTF-8": (b'{"sha": "\xff"}', "cannot be read"),
    "nested past the parser's depth": (b"[" * 100_000 + b"]" * 100_000, "cannot be read"),
    "over the cap": (b'{"x": "' + b"a" * serve.MAX_METADATA_BYTES + b'"}', "is over 4194304 bytes"),
}


@pytest.mark.parametrize("case", BAD_METADATA)
def test_bad_metadata_is_read_as_unknown_never_raised(tmp_path: Path, case: str) -> None:
    data, reason = BAD_METADATA[case]
    path = tmp_path / "metadata.json"
    path.write_bytes(data)
    answer = serve.read_metadata(path)
    assert answer["provenance"] == "unknown" and reason in answer["reason"], answer["reason"]
    assert all(answer[field] is None for field in serve.METADATA_FIELDS)
    json.dumps(answer, allow_nan=False)  # what the endpoint sends is JSON


def test_a_folder_in_place_of_the_file_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").mkdir()
    assert serve.read_metadata(tmp_path / "metadata.json")["reason"].startswith(
        "metadata.json cannot be read"
    )


def test_fields_the_file_lacks_are_null_and_fields_it_adds_are_not_served(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps({"sha": "d" * 40, "secret": "x"}))
    answer = serve.read_metadata(path)
    assert answer == {"provenance": "recorded", "sha": "d" * 40, **dict.fromkeys(serve.METADATA_FIELDS[1:])}

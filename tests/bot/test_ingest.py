"""`POST /webhook` and friends over HTTP (ASGI), with a real SQLite inbox."""

import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import ROUTERS
from bot.inbox import DEAD, DONE, Inbox, make_engine
from bot.ingest import Ingest
from bot.router import Router
from bot.web import create_app
from bot.worker import WorkerPool
from tests.fakes import SECRET, FakeApp, body_of, comment_payload, signed_headers

EXAMPLES: list[dict[str, Any]] = json.loads(
    gzip.decompress((Path(__file__).parent.parent / "fixtures/webhook-examples.json.gz").read_bytes())
)


class Bot:
    def __init__(self, tmp_path: Path) -> None:
        self.inbox = Inbox(make_engine(f"sqlite:///{tmp_path / 'orbit.db'}"))
        self.inbox.create_schema()
        self.router = Router.compose(ROUTERS)
        self.app = FakeApp()
        self.workers = WorkerPool(self.inbox, self.router, self.app, features={})
        self.woken = 0
        self.ingest = Ingest(self.inbox, self.router, SECRET, self._wake)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(create_app(self.inbox, self.ingest, self.workers)),
            base_url="http://bot",
        )

    def _wake(self) -> None:
        self.woken += 1

    async def send(
        self, event: str, payload: dict[str, Any], delivery_id: str | None = None
    ) -> httpx.Response:
        body = body_of(payload)
        return await self.http.post(
            "/webhook", content=body, headers=signed_headers(event, body, delivery_id)
        )

    async def drain(self) -> int:
        handled = 0
        while (item := self.inbox.claim()) is not None:
            await self.workers.handle(item)
            handled += 1
        return handled


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    running = Bot(tmp_path)
    yield running
    await running.http.aclose()


async def test_a_delivery_is_stored_acknowledged_and_handled_once(bot: Bot) -> None:
    first = await bot.send("issue_comment", comment_payload("/help"), "delivery-1")
    again = await bot.send("issue_comment", comment_payload("/help"), "delivery-1")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["message"] == "already received"
    assert bot.woken == 1
    assert await bot.drain() == 1
    assert len(bot.app.github.named("comment")) == 1
    assert bot.inbox.counts() == {DONE: 1}


async def test_a_bad_signature_is_401_and_nothing_is_stored(bot: Bot) -> None:
    body = body_of(comment_payload("/help"))
    headers = signed_headers("issue_comment", body, secret=b"wrong secret")
    response = await bot.http.post("/webhook", content=body, headers=headers)
    assert response.status_code == 401
    unsigned = {k: v for k, v in headers.items() if k != "x-hub-signature-256"}
    assert (await bot.http.post("/webhook", content=body, headers=unsigned)).status_code == 401
    assert bot.inbox.counts() == {}


async def test_an_oversized_body_is_413(bot: Bot) -> None:
    body = b"{" + b" " * (25 * 1024 * 1024) + b"}"
    response = await bot.http.post("/webhook", content=body, headers=signed_headers("push", body))
    assert response.status_code == 413
    assert bot.inbox.counts() == {}


async def test_a_streamed_body_is_cut_off_at_25_mb_without_a_content_length(bot: Bot) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(26):
            yield b" " * (1024 * 1024)

    response = await bot.http.post("/webhook", content=chunks(), headers=signed_headers("push", b"{}"))
    assert response.status_code == 413
    assert response.json() == {"message": "the body is over 25 MB"}
    assert bot.inbox.counts() == {}


async def test_the_webhook_path_answers_only_post(bot: Bot) -> None:
    response = await bot.http.get("/webhook")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_a_delivery_that_cannot_be_stored_is_a_503_so_that_it_can_be_redelivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bot = Bot(tmp_path)
    bot.inbox.engine = make_engine("sqlite:////nonexistent/dir/orbit.db")
    payload = comment_payload("/help")
    response = await bot.send("issue_comment", payload, delivery_id="lost-1")
    assert response.status_code == 503
    assert response.json() == {"message": "the delivery could not be stored"}
    assert "could not store delivery lost-1" in caplog.text
    assert SECRET.decode() not in caplog.text
    bot.inbox.engine = make_engine(f"sqlite:///{tmp_path / 'orbit.db'}")
    assert (await bot.send("issue_comment", payload, delivery_id="lost-1")).status_code == 202
    assert bot.inbox.counts() == {"pending": 1}


async def test_not_json_and_missing_headers_are_400(bot: Bot) -> None:
    body = b"<xml/>"
    assert (
        await bot.http.post("/webhook", content=body, headers=signed_headers("push", body))
    ).status_code == 400
    headers = signed_headers("push", b"{}")
    del headers["x-github-delivery"]
    assert (await bot.http.post("/webhook", content=b"{}", headers=headers)).status_code == 400


async def test_ping_is_200_and_unwanted_events_are_counted_not_queued(bot: Bot) -> None:
    assert (await bot.send("ping", {"zen": "Keep it logically awesome.", "hook_id": 1})).status_code == 200
    assert (await bot.send("star", {"action": "created"})).status_code == 202
    assert (
        await bot.send("issue_comment", {**comment_payload("/help"), "action": "edited"})
    ).status_code == 202
    assert bot.inbox.counts() == {}
    metrics = (await bot.http.get("/metrics")).text
    assert 'orbit_deliveries_total{action="created",event="star",outcome="ignored"}' in metrics
    assert 'orbit_deliveries_total{action="",event="ping",outcome="ping"}' in metrics


async def test_health_readiness_and_metrics(bot: Bot) -> None:
    assert (await bot.http.get("/healthz")).status_code == 200
    assert (await bot.http.get("/readyz")).json() == {"ready": True}
    await bot.send("issue_comment", comment_payload("/help"))
    metrics = (await bot.http.get("/metrics")).text
    assert "orbit_ack_latency_seconds_bucket" in metrics
    assert 'orbit_inbox_depth{status="pending"} 1.0' in metrics
    await bot.drain()
    metrics = (await bot.http.get("/metrics")).text
    assert 'orbit_inbox_depth{status="done"} 1.0' in metrics
    assert 'orbit_work_attempts_total{outcome="done"}' in metrics


async def test_readyz_is_503_when_the_database_is_gone(tmp_path: Path) -> None:
    bot = Bot(tmp_path)
    bot.inbox.engine = make_engine("sqlite:////nonexistent/dir/orbit.db")
    response = await bot.http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["ready"] is False


@pytest.mark.parametrize(
    "example", EXAMPLES, ids=lambda e: f"{e['source']}-{e['event']}-{e['payload'].get('action', '')}"
)
async def test_every_real_payload_is_acknowledged_and_never_crashes_a_worker(
    bot: Bot, example: dict[str, Any]
) -> None:
    bot.app.github.permissions = {"Codertocat": "admin", "octocat": "write"}
    # The examples are repository webhooks; an App's deliveries also name their installation.
    payload = {"installation": {"id": 1}, **example["payload"]}
    response = await bot.send(example["event"], payload)
    assert response.status_code in (200, 202), response.text
    await bot.drain()
    assert set(bot.inbox.counts()) <= {DONE}


async def test_every_real_payload_survives_missing_fields(bot: Bot) -> None:
    for example in EXAMPLES:
        if example["source"] != "api.github.com":
            continue
        for key in list(example["payload"]):
            trimmed = {k: v for k, v in {"installation": {"id": 1}, **example["payload"]}.items() if k != key}
            response = await bot.send(example["event"], trimmed)
            assert response.status_code in (200, 202)
    await bot.drain()
    reasons = {item["last_error"] for item in bot.inbox.list_items(DEAD, limit=10_000)}
    assert reasons <= {
        "the delivery names no installation, so GitHub cannot be called (file_text)",
        "the delivery names no installation, so GitHub cannot be called (add_reaction)",
    }
    assert set(bot.inbox.counts()) <= {DONE, DEAD}

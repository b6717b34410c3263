"""Where an acknowledgement's time goes: each step of the ingest path, timed alone in this process.

HMAC (the signature check), decode (the routing fields), compression (zstd), the insert (a group
commit of 32 deliveries, per delivery), the response (the JSON answer sent through ASGI), and the
whole path in the app without an HTTP server (ASGI in, ASGI out). What the HTTP server and the event
loop take is the rest of the time per request measured by `bench.ingest`. Run alone: `python -m
bench.ingest_profile`.
"""

import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable, MutableMapping
from http import HTTPStatus
from pathlib import Path
from typing import Any

from bot.delivery import Delivery, parse_delivery, routing_fields, signature_of, verify_signature
from bot.events import ordering_key
from bot.inbox import Inbox, NewDelivery, make_engine
from bot.ingest import Ingest
from bot.payload_codec import pack
from bot.router import Router
from bot.webhook_endpoint import WebhookFirst, _answer

SECRET = b"benchmark secret"
BATCH = 32


def per_call(work: Callable[[], object], calls: int = 2_000) -> float:
    """Return the median over 5 rounds of the time per call of `work`, in microseconds."""
    rounds = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(calls):
            work()
        rounds.append((time.perf_counter() - began) / calls * 1e6)
    return sorted(rounds)[2]


def headers_for(body: bytes) -> dict[str, str]:
    """Return a delivery's headers, with a fresh id."""
    return {
        "x-github-event": "pull_request",
        "x-github-delivery": str(uuid.uuid4()),
        "x-hub-signature-256": signature_of(SECRET, body),
        "content-type": "application/json",
        "content-length": str(len(body)),
    }


def insert_cost(inbox: Inbox, body: bytes) -> float:
    """Return the time per delivery of recording batches of `BATCH` (payload already compressed: no)."""
    fields = routing_fields(body)

    def batch() -> None:
        inbox.record(
            [
                NewDelivery(Delivery("pull_request", str(uuid.uuid4()), fields), "o/r#1", body)
                for _ in range(BATCH)
            ]
        )

    return per_call(batch, 100) / BATCH


async def app_path(app: WebhookFirst, body: bytes, calls: int = 2_000) -> float:
    """Return the time per delivery through the ASGI app (no HTTP server), 32 at once, in microseconds."""

    async def one() -> None:
        headers = [(name.encode(), value.encode()) for name, value in headers_for(body).items()]
        scope = {"type": "http", "path": "/webhook", "method": "POST", "headers": headers}
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        assert sent[0]["status"] == HTTPStatus.ACCEPTED, sent

    began = time.perf_counter()
    for _ in range(calls // BATCH):
        await asyncio.gather(*(one() for _ in range(BATCH)))
    return (time.perf_counter() - began) / (calls // BATCH * BATCH) * 1e6


def profile(body: bytes) -> dict[str, float]:
    """Return microseconds per delivery for each step and for the whole app path."""
    from bench.ingest_server import wanted_router

    with tempfile.TemporaryDirectory() as scratch:
        inbox = Inbox(make_engine(f"sqlite:///{Path(scratch) / 'orbit.db'}"))
        inbox.create_schema()
        router: Router = wanted_router()
        headers = headers_for(body)
        delivery = parse_delivery(headers, body, SECRET)
        signature = headers["x-hub-signature-256"]
        steps = {
            "HMAC (signature check)": per_call(lambda: verify_signature(SECRET, body, signature)),
            "decode (routing fields)": per_call(lambda: routing_fields(body)),
            "ordering key": per_call(lambda: ordering_key(delivery)),
            "compression (zstd)": per_call(lambda: pack(body)),
            "insert (group commit of 32, per delivery)": insert_cost(inbox, body),
            "response (JSON answer through ASGI)": asyncio.run(answer_cost()),
        }
        ingest = Ingest(inbox, router, SECRET, lambda: None)
        steps["whole app path, no HTTP server (32 at once)"] = asyncio.run(
            app_path(WebhookFirst(_not_found, "/webhook", ingest), body)
        )
        inbox.engine.dispose()
    return steps


async def answer_cost(calls: int = 10_000) -> float:
    """Return the time per answer sent through ASGI, in microseconds."""
    began = time.perf_counter()
    for _ in range(calls):
        await _answer(_discard, HTTPStatus.ACCEPTED, "queued")
    return (time.perf_counter() - began) / calls * 1e6


async def _discard(_message: Any) -> None:
    """An ASGI send that keeps nothing."""


async def _not_found(_scope: Any, _receive: Any, _send: Any) -> None:
    raise AssertionError("only /webhook is profiled")


def main() -> None:
    """Print each step's cost."""
    from bench.ingest import payload

    body = payload()
    for name, micros in profile(body).items():
        print(f"  {name:<46} {micros:8.1f} µs")


if __name__ == "__main__":
    main()

"""`POST /webhook` as a bare ASGI endpoint in front of the FastAPI app.

Every delivery passes here, so the hot path skips the framework's per-request layers (routing,
middleware, request objects); every other request and the lifespan go to the FastAPI app.
"""

import logging
import time
from http import HTTPStatus

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.delivery import MAX_BODY_BYTES
from bot.ingest import Ingest
from bot.metrics import ACK_LATENCY

log = logging.getLogger(__name__)
JSON_HEADERS = [(b"content-type", b"application/json")]


class BodyTooLarge(Exception):
    """The request body grew past the limit while it was read."""


class WebhookFirst:
    """Answer requests to `path` with the ingest; pass everything else to `app`."""

    def __init__(self, app: ASGIApp, path: str, ingest: Ingest) -> None:
        self.app, self.path, self.ingest = app, path, ingest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
        elif scope["method"] != "POST":
            await _answer(send, HTTPStatus.METHOD_NOT_ALLOWED, "use POST", [(b"allow", b"POST")])
        else:
            await self._webhook(scope, receive, send)

    async def _webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        length = headers.get("content-length", "")
        try:
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                raise BodyTooLarge
            body = await _read_body(receive)
        except BodyTooLarge:
            await _answer(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body is over 25 MB")
            return
        try:
            answer = await self.ingest.receive(headers, body)
        except Exception:  # the inbox is unreachable: say so, so that the delivery is redelivered
            log.exception("could not store delivery %s", headers.get("x-github-delivery", "?")[:64])
            await _answer(send, HTTPStatus.SERVICE_UNAVAILABLE, "the delivery could not be stored")
            return
        ACK_LATENCY.observe(time.perf_counter() - started)
        await _answer(send, answer.status, answer.message)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(
    send: Send, status: HTTPStatus, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps({"message": message})
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status.value, "headers": headers})
    await send({"type": "http.response.body", "body": body})

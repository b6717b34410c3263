"""`POST /webhook` as a bare ASGI endpoint in front of the FastAPI app.

Every delivery passes here, so the hot path skips the framework's per-request layers (routing,
middleware, request objects); every other request and the lifespan go to the FastAPI app.

Bodies are read before their signature can be checked, so what unsigned requests can make the
process hold is bounded twice: one body at 25 MB (413, from `Content-Length` before reading when it
is declared), and all the bodies being read or handled at once at `MAX_INFLIGHT_BODY_BYTES` (503 with
`Retry-After`, before reading when `Content-Length` is declared, else as the chunks arrive; given
back once the delivery is stored or refused, before the answer is sent). A body over 64 KiB, or
one that does not come whole in its first message, must arrive within `BODY_READ_SECONDS` (408),
so that slow senders cannot keep the budget taken; a small one is waited for without a timer (the
common delivery pays for none), holding at most 64 KiB of the budget, as an idle connection holds
a socket.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from http import HTTPStatus

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.delivery import MAX_BODY_BYTES
from bot.ingest import Answer, Ingest
from bot.metrics import ACK_LATENCY, DELIVERIES, UNVERIFIED

log = logging.getLogger(__name__)
JSON_HEADERS = [(b"content-type", b"application/json")]
MAX_INFLIGHT_BODY_BYTES = 64 * 1024 * 1024
BODY_READ_SECONDS = 30.0
UNTIMED_BODY_BYTES = 64 * 1024  # a declared body this small is waited for without a deadline


class BodyBudget:
    """The request body bytes a process holds at once, against a limit.

    One event loop serves every request of the process and nothing here awaits, so a plain counter
    is exact without a lock.
    """

    __slots__ = ("held", "limit", "peak")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0  # the most held at once since start: for tests and capacity planning

    def take(self, size: int) -> bool:
        """Count `size` more bytes as held, or return False (and count nothing) past the limit."""
        held = self.held + size
        if held > self.limit:
            return False
        self.held = held
        self.peak = max(self.peak, held)
        return True

    def give(self, size: int) -> None:
        """Release bytes taken before."""
        self.held -= size


BODY_BUDGET = BodyBudget(MAX_INFLIGHT_BODY_BYTES)  # the process's: every WebhookFirst shares it


@dataclass(frozen=True)
class Refusal:
    """An answer given before the signature could be checked (so counted without the event's name)."""

    status: HTTPStatus
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


TOO_LARGE = Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body is over 25 MB")
BUSY = Refusal(
    HTTPStatus.SERVICE_UNAVAILABLE,
    "too many deliveries in flight; retry in a second",
    ((b"retry-after", b"1"),),
)
TOO_SLOW = Refusal(HTTPStatus.REQUEST_TIMEOUT, f"the body took over {BODY_READ_SECONDS:g} s to arrive")
STORE_FAILED = Answer(HTTPStatus.SERVICE_UNAVAILABLE, "the delivery could not be stored")


class Refused(Exception):
    """Reading the body stopped: it grew past 25 MB or past what the budget has left, or stalled."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class ClientGone(Exception):
    """The client disconnected before its body arrived."""


class WebhookFirst:
    """Answer requests to `path` with the ingest; pass everything else to `app`."""

    def __init__(self, app: ASGIApp, path: str, ingest: Ingest, budget: BodyBudget = BODY_BUDGET) -> None:
        self.app, self.path, self.ingest, self.budget = app, path, ingest, budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
        elif scope["method"] != "POST":
            await _answer(send, HTTPStatus.METHOD_NOT_ALLOWED, "use POST", ((b"allow", b"POST"),))
        else:
            await self._webhook(scope, receive, send)

    async def _webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        answer = await self._receive(headers, receive)
        if answer is None:  # the client is gone: nobody to answer
            return
        if isinstance(answer, Refusal):
            DELIVERIES.labels(UNVERIFIED, "", f"rejected_{answer.status.value}").inc()
            await _answer(send, answer.status, answer.message, answer.headers)
            return
        if answer is not STORE_FAILED:
            ACK_LATENCY.observe(time.perf_counter() - started)
        await _answer(send, answer.status, answer.message)

    async def _receive(self, headers: dict[str, str], receive: Receive) -> Answer | Refusal | None:
        """Read the body within the budget, hand it to the ingest, return the answer (None: the client left).

        The budget is given back before the answer is sent: a client slow to read it holds none.
        """
        declared = _declared_length(headers.get("content-length", ""))
        if declared > MAX_BODY_BYTES:
            return TOO_LARGE
        budget = self.budget
        if not budget.take(declared):
            return BUSY
        held = declared  # taken from the budget for this request
        try:
            body, held = await self._read(receive, declared)
            return await self.ingest.receive(headers, body)
        except Refused as refused:
            return refused.refusal
        except ClientGone:
            return None
        except Exception:  # the inbox is unreachable: say so, so that the delivery is redelivered
            log.exception("could not store delivery %s", headers.get("x-github-delivery", "?")[:64])
            return STORE_FAILED
        finally:
            budget.give(held)

    async def _read(self, receive: Receive, declared: int) -> tuple[bytes, int]:
        """Return the body and the budget bytes it holds (`declared`, or more if it sent more).

        A delivery of a few kilobytes (almost every one) comes in its first message: no deadline is
        armed for it. Any other body must arrive within `BODY_READ_SECONDS`.
        """
        message: Message | None = None
        if 0 < declared <= UNTIMED_BODY_BYTES:
            # While this waits it holds a little of the budget, as an idle connection holds a socket.
            message = await receive()
            body: bytes = message.get("body", b"")
            if (
                message["type"] == "http.request"
                and not message.get("more_body", False)
                and len(body) <= declared
            ):
                return body, declared
        try:
            async with asyncio.timeout(BODY_READ_SECONDS):  # a stalled sender cannot keep its share
                return await self._read_chunks(receive, message or await receive(), declared)
        except TimeoutError:
            raise Refused(TOO_SLOW) from None

    async def _read_chunks(self, receive: Receive, message: Message, held: int) -> tuple[bytes, int]:
        """Read the body from its first message on, taking each chunk from the budget before keeping it.

        Return the body and the bytes now held; on any failure, give back what this took first.
        """
        chunks: list[bytes] = []
        size, taken = 0, held
        try:
            while True:
                if message["type"] != "http.request":
                    raise ClientGone
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise Refused(TOO_LARGE)
                if size > taken:
                    if not self.budget.take(size - taken):
                        raise Refused(BUSY)
                    taken = size
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks), taken
                message = await receive()
        except BaseException:
            self.budget.give(taken - held)
            raise


def _declared_length(value: str) -> int:
    """Return the `Content-Length` (0 when there is none or it is not a number; too long: past the cap)."""
    if not (value.isascii() and value.isdigit()):  # str.isdigit alone takes "²", which int() refuses
        return 0
    return int(value) if len(value) <= 9 else MAX_BODY_BYTES + 1  # int() refuses over 4,300 digits


async def _answer(
    send: Send, status: HTTPStatus, message: str, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = orjson.dumps({"message": message})
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status.value, "headers": headers})
    await send({"type": "http.response.body", "body": body})

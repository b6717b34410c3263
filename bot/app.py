"""The bot's HTTP face: webhook ingest, health, readiness and metrics (Starlette under FastAPI)."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Route

from bot.delivery import MAX_BODY_BYTES
from bot.inbox import Inbox
from bot.ingest import Ingest
from bot.metrics import ACK_LATENCY
from bot.worker import WorkerPool

log = logging.getLogger(__name__)


def _answer(status: HTTPStatus, message: str) -> Response:
    return Response(
        orjson.dumps({"message": message}), status_code=status.value, media_type="application/json"
    )


@dataclass(frozen=True)
class Periodic:
    """A background job run at start-up and then every `every` seconds (checkpoints, the reconciler)."""

    name: str
    run: Callable[[], Awaitable[object]]
    every: float


async def _repeat(job: Periodic, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await job.run()
        except Exception:  # a failed pass is logged; the next one runs on time
            log.exception("%s failed", job.name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), job.every)


def create_app(
    inbox: Inbox,
    ingest: Ingest,
    workers: WorkerPool | None,
    webhook_path: str = "/webhook",
    periodic: Sequence[Periodic] = (),
) -> FastAPI:
    """Build the ASGI app; `workers` run in the same process unless None."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        checkpoint = Periodic("checkpoint", lambda: asyncio.to_thread(inbox.checkpoint), 1.0)
        tasks = [asyncio.create_task(_repeat(job, stop)) for job in (checkpoint, *periodic)]
        if workers:
            tasks.append(asyncio.create_task(workers.run(stop)))
        yield
        stop.set()
        await asyncio.gather(*tasks)

    app = FastAPI(title="orbit", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    async def webhook(request: Request) -> Response:
        started = time.perf_counter()
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return _answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body is over 25 MB")
        body = await request.body()
        answer = await ingest.receive(dict(request.headers), body)
        ACK_LATENCY.observe(time.perf_counter() - started)
        return _answer(answer.status, answer.message)

    async def healthz() -> Response:
        return PlainTextResponse("ok")

    async def readyz() -> Response:
        try:
            await asyncio.to_thread(inbox.ping)
        except Exception as error:
            return JSONResponse({"ready": False, "reason": type(error).__name__}, status_code=503)
        return JSONResponse({"ready": True})

    async def metrics() -> Response:
        if workers:
            await asyncio.to_thread(workers.refresh_depth)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # A plain Starlette route: the hot path skips FastAPI's parameter machinery.
    app.router.routes.append(Route(webhook_path, webhook, methods=["POST"]))
    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_api_route("/readyz", readyz, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
    return app

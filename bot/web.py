"""The bot's HTTP face: webhook ingest, health, readiness and metrics (Starlette under FastAPI)."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp

from bot.inbox import Inbox
from bot.ingest import Ingest
from bot.webhook_endpoint import WebhookFirst
from bot.worker import WorkerPool

log = logging.getLogger(__name__)
CHECKPOINT_SECONDS = 0.2
INGEST_ONLY_CHECKPOINT_SECONDS = 5.0


@dataclass(frozen=True)
class Periodic:
    """A background job run at start-up and then every `every` seconds (checkpoints, the reconciler).

    `cut_short`: a pass still running when the process stops is cancelled instead of waited for: a
    long job that is safe to stop anywhere (the retention pass) never holds up a stop.
    """

    name: str
    run: Callable[[], Awaitable[object]]
    every: float
    cut_short: bool = False


async def _repeat(job: Periodic, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await job.run()
        except Exception:  # a failed pass is logged; the next one runs on time
            log.exception("%s failed", job.name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), job.every)


async def _warm(warmup: Callable[[], Awaitable[None]]) -> None:
    """Run one warm-up; a failure is only logged: the first event does the same work and reports it."""
    try:
        await warmup()
    except Exception:
        log.warning("a warm-up at start failed; the first event will do its work", exc_info=True)


def checkpoint_job(inbox: Inbox, with_workers: bool) -> Periodic:
    """Return the job copying SQLite's write-ahead log into the database, often where workers run.

    The copy is background work, so it belongs to the workers, at their lower priority when they run
    in a process of their own. An ingest process copies too, seldom, so that the log stays bounded
    while no worker runs.
    """
    every = CHECKPOINT_SECONDS if with_workers else INGEST_ONLY_CHECKPOINT_SECONDS
    return Periodic("checkpoint", lambda: asyncio.to_thread(inbox.checkpoint), every)


def create_app(
    inbox: Inbox,
    ingest: Ingest | None,
    workers: WorkerPool | None,
    webhook_path: str = "/webhook",
    periodic: Sequence[Periodic] = (),
    warmups: Sequence[Callable[[], Awaitable[None]]] = (),
) -> ASGIApp:
    """Build the ASGI app; `workers` run in the same process unless None.

    `/webhook` is served unless `ingest` is None: a worker process answers health, readiness and
    metrics only. `warmups` run at start-up, before anything is served: what the first event would
    otherwise pay once (connection pools, modules imported on first use).
    """

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Blocking calls (the Kubernetes client, the inbox) run in threads; asyncio's default pool
        # has cores + 4 of them, fewer than the workers that wait on such calls at once.
        threads = ThreadPoolExecutor((workers.concurrency if workers else 0) + 8, thread_name_prefix="orbit")
        asyncio.get_running_loop().set_default_executor(threads)
        for warmup in warmups:
            await _warm(warmup)
        # What start-up built lives as long as the process: keep the collector from walking it again
        # and again (a full collection over the imported libraries takes tens of milliseconds).
        gc.freeze()
        stop = asyncio.Event()
        checkpoint = checkpoint_job(inbox, with_workers=workers is not None)
        jobs = (checkpoint, *periodic)
        tasks = [asyncio.create_task(_repeat(job, stop)) for job in jobs]
        if workers:
            tasks.append(asyncio.create_task(workers.run(stop)))
        yield
        stop.set()
        cut = [task for job, task in zip(jobs, tasks, strict=False) if job.cut_short]  # not the workers'
        for task in cut:
            task.cancel()
        await asyncio.gather(*(task for task in tasks if task not in cut))
        if cut:
            await asyncio.wait(cut)  # each ends at its next await

    app = FastAPI(title="orbit", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    async def healthz() -> Response:
        return PlainTextResponse("ok")

    async def readyz() -> Response:
        stuck = workers.stuck() if workers else []
        if stuck:
            reason = f"work items {stuck} have been handled for too long: a worker is stuck"
            return JSONResponse({"ready": False, "reason": reason}, status_code=503)
        try:
            await asyncio.to_thread(inbox.check_writable)
        except Exception as error:  # unreachable, read-only or full: deliveries could not be stored
            return JSONResponse({"ready": False, "reason": type(error).__name__}, status_code=503)
        return JSONResponse({"ready": True})

    async def metrics() -> Response:
        if workers:
            await asyncio.to_thread(workers.refresh_depth)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_api_route("/readyz", readyz, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
    return app if ingest is None else WebhookFirst(app, webhook_path, ingest)

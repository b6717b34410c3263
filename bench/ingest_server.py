"""The bot's real ingest path for the benchmark: HTTP, signature, parsing, durable group-committed write.

`ORBIT_BENCH_ROLE` says what the process runs, as `orbit serve --role` does: `ingest` (the default:
no workers), `worker` (a worker pool, at the worker role's lower CPU priority, and no webhook) or
`all` (both in one process). The workers' handler ends without a GitHub call.
`ORBIT_BENCH_RETENTION_SECONDS` (soak benchmark): a retention pass every second deleting what was
handled that long ago.
"""

import os
from types import SimpleNamespace
from typing import cast

from starlette.types import ASGIApp

from bot.context import Context
from bot.events import PullRequestEvent
from bot.github import GitHubApp
from bot.inbox import Inbox, make_engine
from bot.ingest import Ingest
from bot.processes import lower_priority
from bot.router import Router
from bot.web import Periodic, create_app
from bot.worker import Retention, WorkerPool


def wanted_router() -> Router:
    """Return a router that wants pull_request deliveries, so each is stored; handling one calls nothing."""
    router = Router()

    @router.on(PullRequestEvent)
    async def wanted(_: PullRequestEvent, __: Context) -> None:
        """Take the delivery."""

    return router


def app() -> ASGIApp:
    """Build the app from ORBIT_DATABASE_URL, ORBIT_WEBHOOK_SECRET and ORBIT_BENCH_ROLE."""
    inbox = Inbox(make_engine(os.environ["ORBIT_DATABASE_URL"]))
    inbox.create_schema()
    router = wanted_router()
    role = os.environ.get("ORBIT_BENCH_ROLE", "ingest")
    workers = None
    if role != "ingest":
        github = cast(GitHubApp, SimpleNamespace(for_installation=lambda _installation: None))
        workers = WorkerPool(inbox, router, github, features={}, concurrency=16, poll_seconds=0.2)
    if role == "worker":
        lower_priority()
    ingest = Ingest(
        inbox, router, os.environ["ORBIT_WEBHOOK_SECRET"].encode(), workers.wake if workers else lambda: None
    )
    periodic = []
    retention = float(os.environ.get("ORBIT_BENCH_RETENTION_SECONDS", "0"))
    if retention and role != "ingest":  # periodic jobs are the workers', as in `orbit serve`
        periodic.append(Periodic("retention", Retention(inbox, retention / 86_400).run_once, 1.0))
    return create_app(inbox, ingest if role != "worker" else None, workers, periodic=periodic)

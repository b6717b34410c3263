"""How fast the workers drain a backlog, by its size: 1k, 10k and 100k pending, on SQLite and PostgreSQL.

The inbox is filled with `pull_request` deliveries spread over 1,000 pull requests (so most items wait
behind an earlier one of their pull request, as in a burst), then one worker pool on one core handles
`SAMPLE` of them with a handler that makes no GitHub call. The rate is items completed per second.
The goal: at least 1,000/s at every backlog, so the cost of a claim does not grow with the backlog.
The baseline is the same pool on the smallest backlog: the ratio at 100k says how much the backlog costs.
Then the same at 10k on SQLite with a handler that makes one call to the GitHub double (its own
process, on another core), as a handler that answers a command does.
"""

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx
import orjson

from bench.harness import serve_double
from bot.context import Context
from bot.delivery import Delivery
from bot.github import GitHubApp
from bot.inbox import Inbox, NewDelivery, make_engine
from bot.processes import stop
from bot.router import Router
from bot.worker import WorkerPool

BACKLOGS = (1_000, 10_000, 100_000)
SAMPLE = 3_000  # items handled per measurement (all of them for the smallest backlog)
PULLS = 1_000
GOAL = 1_000.0
CALLED = "/repos/o/r/actions/runs/1"  # a read the GitHub double answers
BODY = orjson.dumps({"action": "opened", "number": 1})  # no installation: the handler calls nothing


@contextmanager
def sqlite_url() -> Iterator[str]:
    """Yield the URL of a new SQLite file."""
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'inbox.db'}"


@contextmanager
def postgres_url() -> Iterator[str]:
    """Yield the URL of a throwaway PostgreSQL server (Debian's binaries, as the tests run it)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.postgres import running_postgres

    with running_postgres() as url:
        yield url


def fill(inbox: Inbox, count: int) -> None:
    """Record `count` pending deliveries, 1,000 a transaction."""
    for start in range(0, count, 1_000):
        batch = [
            NewDelivery(
                Delivery("pull_request", f"d-{i}", {"action": "opened"}),
                f"octo/repo#{i % PULLS}",
                BODY,
            )
            for i in range(start, min(count, start + 1_000))
        ]
        inbox.record(batch)


async def drain(inbox: Inbox, items: int, double: str | None = None) -> float:
    """Run one worker pool until `items` are completed; return items per second.

    With `double` (a URL), each handler makes one GET to it, on one HTTP client shared by the pool.
    """
    handled = 0
    finished = asyncio.Event()
    client = httpx.AsyncClient(base_url=double) if double else None

    async def count(_delivery: Delivery, _ctx: Context) -> None:
        nonlocal handled
        if client is not None:
            (await client.get(CALLED)).raise_for_status()
        handled += 1
        if handled >= items:
            finished.set()

    router = cast(Router, SimpleNamespace(handlers_for=lambda _event, _action: [count]))
    pool = WorkerPool(inbox, router, cast(GitHubApp, None), features={}, concurrency=16, poll_seconds=0.05)
    stop = asyncio.Event()
    began = time.perf_counter()
    task = asyncio.create_task(pool.run(stop))
    await finished.wait()
    stop.set()
    await task
    rate = items / (time.perf_counter() - began)
    if client is not None:
        await client.aclose()
    return rate


async def calls_alone(double: str, calls: int = SAMPLE, concurrency: int = 16) -> float:
    """Return the rate of the same GET with no inbox and no worker pool: the baseline of a calling drain."""
    async with httpx.AsyncClient(base_url=double) as client:

        async def caller(count: int) -> None:
            for _ in range(count):
                (await client.get(CALLED)).raise_for_status()

        began = time.perf_counter()
        await asyncio.gather(*(caller(calls // concurrency) for _ in range(concurrency)))
        return calls // concurrency * concurrency / (time.perf_counter() - began)


def measure(url: str, backlog: int, double: str | None = None) -> float:
    """Return the drain rate of a fresh inbox holding `backlog` pending items."""
    engine = make_engine(url)
    inbox = Inbox(engine)
    inbox.create_schema()
    fill(inbox, backlog)
    rate = asyncio.run(drain(inbox, min(SAMPLE, backlog), double))
    engine.dispose()
    return rate


def reset(url: str) -> None:
    """Drop the inbox's tables, so the next backlog starts from an empty database."""
    from bot.inbox import metadata

    engine = make_engine(url)
    metadata.drop_all(engine)
    engine.dispose()


def main() -> None:
    """Print the drain rate at each backlog, on each database, and its ratio to the smallest backlog."""
    cpus = sorted(os.sched_getaffinity(0))
    github = serve_double("tests.github_double:app", CALLED)  # on the other core, as GitHub is elsewhere
    os.sched_setaffinity(0, {cpus[0]})  # the workers and their database on one core, as the goal says
    print(f"drain: {SAMPLE:,} items a measurement, {PULLS:,} pull requests, one core, goal {GOAL:,.0f}/s")
    try:
        alone = asyncio.run(calls_alone(github.url))
        with sqlite_url() as url:
            calling = measure(url, 10_000, github.url)
    finally:
        stop(github.process)
    print(
        f"  SQLite      10,000 pending, one GitHub call each (a local double): {calling:8,.0f}/s"
        f"  ({calling / alone:.2f}× of the same calls alone, {alone:,.0f}/s: httpx and the double)"
    )
    for name, database in (("SQLite", sqlite_url), ("PostgreSQL", postgres_url)):
        with database() as url:
            rates = {}
            for backlog in BACKLOGS:
                reset(url)
                rates[backlog] = measure(url, backlog)
            baseline = rates[BACKLOGS[0]]
            for backlog, rate in rates.items():
                verdict = "ok" if rate >= GOAL else "BELOW GOAL"
                print(
                    f"  {name:<10} {backlog:>7,} pending: {rate:8,.0f}/s"
                    f"  ({rate / baseline:.2f}× of the {BACKLOGS[0]:,} backlog)  {verdict}"
                )


if __name__ == "__main__":
    main()

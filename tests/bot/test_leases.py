"""A claim's lease: renewed while its handler runs, counted when it lapses, and what /readyz says of it."""

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from bot.context import Context
from bot.events import IssueCommentEvent
from bot.inbox import DEAD, DONE, LEASE_EXPIRED, Inbox, make_engine, metadata, work_items
from bot.ingest import Ingest
from bot.router import Router
from bot.web import create_app
from bot.worker import WorkerPool
from tests.bot.test_inbox import fresh_inbox, new
from tests.fakes import SECRET, FakeApp
from tests.postgres import postgres_url

assert postgres_url  # a fixture, used by name


@pytest.fixture(params=["sqlite", "postgresql"])
def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inbox]:
    yield from fresh_inbox(request, tmp_path, lease_seconds=0.3, max_attempts=3)


def lapse(inbox: Inbox) -> None:
    """Let every running item's lease run out, as if its worker had died."""
    with inbox.engine.begin() as connection:
        connection.execute(work_items.update().values(lease_expires_at=time.time() - 1))


def test_a_poison_delivery_whose_worker_dies_each_time_ends_dead(inbox: Inbox) -> None:
    inbox.record([new(delivery_id="poison")])
    for attempt in range(1, 4):  # each claim's worker dies (OOM, SIGKILL) before it records anything
        (item,) = inbox.claim_many(5)
        assert item.attempts == attempt
        lapse(inbox)
    assert inbox.claim_many(5) == [], "after max_attempts lapsed leases it is not claimed again"
    (row,) = inbox.list_items()
    assert (row["status"], row["last_error"]) == (DEAD, LEASE_EXPIRED.format(attempts=3))


async def test_a_handler_longer_than_its_lease_runs_once(inbox: Inbox) -> None:
    runs = 0
    router = Router()

    @router.on(IssueCommentEvent, "created")
    async def slow(_: IssueCommentEvent, __: Context) -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(1.2)  # four leases long

    inbox.record([new(delivery_id="slow")])
    first, second = (WorkerPool(inbox, router, FakeApp(), {}, poll_seconds=0.05) for _ in range(2))
    stop = asyncio.Event()
    replicas = [asyncio.create_task(pool.run(stop)) for pool in (first, second)]  # two replicas
    deadline = time.monotonic() + 10
    while inbox.counts().get(DONE, 0) < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*replicas)
    assert runs == 1, "the lease was renewed: the other replica never took the item"
    assert inbox.counts() == {DONE: 1}


async def test_a_stuck_handler_fails_readyz_and_lets_its_lease_lapse(tmp_path: Path) -> None:
    inbox = Inbox(make_engine(f"sqlite:///{tmp_path / 'orbit.db'}"), lease_seconds=0.3, max_attempts=3)
    inbox.create_schema()
    release = asyncio.Event()
    router = Router()

    @router.on(IssueCommentEvent, "created")
    async def hangs(_: IssueCommentEvent, __: Context) -> None:
        await release.wait()

    workers = WorkerPool(inbox, router, FakeApp(), {}, poll_seconds=0.05, max_handler_seconds=0.5)
    app = create_app(inbox, Ingest(inbox, router, SECRET, workers.wake), workers)
    inbox.record([new(delivery_id="hangs")])
    (item,) = inbox.claim_many(1)
    handling = asyncio.create_task(workers.handle(item))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bot") as http:
        assert (await http.get("/readyz")).status_code == 200
        await asyncio.sleep(1.0)
        answer = await http.get("/readyz")
        assert answer.status_code == 503 and "stuck" in answer.json()["reason"]
        lease = inbox.list_items()[0]["lease_expires_at"]
        assert lease < time.time(), "no longer renewed: another replica may take the item over"
        release.set()
        await handling
        assert (await http.get("/readyz")).status_code == 200


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB file system of its own (tmpfs), to fill up."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


async def test_readyz_fails_when_the_disk_is_full(small_disk: Path) -> None:
    inbox = Inbox(make_engine(f"sqlite:///{small_disk / 'orbit.db'}"))
    inbox.create_schema()
    app = create_app(inbox, Ingest(inbox, Router(), SECRET, lambda: None), None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bot") as http:
        assert (await http.get("/readyz")).status_code == 200
        with contextlib.suppress(OSError), (small_disk / "filler").open("wb") as filler:
            while True:  # until the disk is full
                filler.write(b"\0" * 65536)
                filler.flush()
        inbox.ping()  # reads still work: the old probe, a SELECT, said ready
        answer = await http.get("/readyz")
        assert answer.status_code == 503, "a bot that cannot store deliveries is not ready"
    inbox.engine.dispose()


def test_a_postgresql_batch_with_one_bad_row_stores_the_others(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    metadata.drop_all(engine)
    inbox = Inbox(engine)
    inbox.create_schema()
    bad = new(delivery_id="x" * 65)  # longer than the column: PostgreSQL refuses it, SQLite would not
    results = inbox.record([new(delivery_id="good-1"), bad, new(delivery_id="good-2")])
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], sa.exc.DBAPIError)
    assert sorted(row["delivery_id"] for row in inbox.list_items()) == ["good-1", "good-2"]
    engine.dispose()


def test_a_sqlite_batch_with_one_refused_row_stores_the_others(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'orbit.db'}")
    inbox = Inbox(engine)
    inbox.create_schema()
    with engine.begin() as connection:  # SQLite refuses this one delivery, as a full disk would refuse all
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON deliveries WHEN NEW.delivery_id = 'bad'"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    results = inbox.record([new(delivery_id="good-1"), new(delivery_id="bad"), new(delivery_id="good-2")])
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], sqlite3.IntegrityError) and "refused" in str(results[1])
    assert sorted(row["delivery_id"] for row in inbox.list_items()) == ["good-1", "good-2"]
    with pytest.raises(sqlite3.IntegrityError):  # alone, its error reaches the caller (a 503)
        inbox.record([new(delivery_id="bad")])
    assert inbox.record([new(delivery_id="good-3")]) == [True], "the failed transaction was rolled back"
    assert inbox.record([new(delivery_id="good-3")]) == [False]
    engine.dispose()

"""Workers: retries with backoff, dead letters, order within a pull request, parallelism across them."""

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.context import Context
from bot.errors import PermanentError, TemporaryError
from bot.events import IssueCommentEvent, ordering_key
from bot.inbox import DEAD, DONE, PENDING, Inbox, NewDelivery, make_engine
from bot.router import Router
from bot.worker import WorkerPool
from tests.fakes import FakeApp, body_of, comment_payload, delivery


def make_inbox(tmp_path: Path) -> Inbox:
    inbox = Inbox(make_engine(f"sqlite:///{tmp_path / 'orbit.db'}"), lease_seconds=60, max_attempts=3)
    inbox.create_schema()
    return inbox


def enqueue(inbox: Inbox, number: int, delivery_id: str, body: str = "/help") -> None:
    payload = comment_payload(body, number=number)
    item = delivery("issue_comment", payload, delivery_id)
    inbox.record([NewDelivery(item, ordering_key(item), body_of(payload))])


def make_due(inbox: Inbox) -> None:
    with inbox.engine.begin() as connection:
        connection.execute(sa.text("UPDATE work_items SET available_at = 0"))


async def run_once(inbox: Inbox, router: Router) -> None:
    workers = WorkerPool(inbox, router, FakeApp(), features={})
    item = inbox.claim()
    assert item is not None
    await workers.handle(item)


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (TemporaryError("GitHub answered 502"), PENDING, "GitHub answered 502"),
        (PermanentError("GitHub answered 404"), DEAD, "GitHub answered 404"),
        (KeyError("head"), PENDING, "KeyError: 'head'"),
    ],
)
async def test_a_failure_is_retried_or_dead_lettered(
    tmp_path: Path, error: Exception, status: str, reason: str
) -> None:
    inbox, router = make_inbox(tmp_path), Router()

    @router.on(IssueCommentEvent, "created")
    async def fail(_: IssueCommentEvent, __: Context) -> None:
        raise error

    enqueue(inbox, 1, "d")
    await run_once(inbox, router)
    (item,) = inbox.list_items()
    assert (item["status"], item["last_error"]) == (status, reason)


async def test_temporary_failures_end_dead_after_the_attempt_limit(tmp_path: Path) -> None:
    inbox, router = make_inbox(tmp_path), Router()
    attempts = 0

    @router.on(IssueCommentEvent)
    async def flaky(_: IssueCommentEvent, __: Context) -> None:
        nonlocal attempts
        attempts += 1
        raise TemporaryError("GitHub answered 503", retry_after=1)

    enqueue(inbox, 1, "d")
    for _ in range(3):
        await run_once(inbox, router)
        make_due(inbox)
    assert attempts == 3
    assert inbox.list_items()[0]["status"] == DEAD
    assert inbox.retry(inbox.list_items()[0]["id"])
    assert inbox.counts() == {PENDING: 1}


async def test_a_delivery_without_installation_cannot_call_github(tmp_path: Path) -> None:
    inbox, router = make_inbox(tmp_path), Router()

    @router.on(IssueCommentEvent)
    async def comment(item: IssueCommentEvent, ctx: Context) -> None:
        await ctx.github.create_comment(None, 1, "x")  # type: ignore[arg-type]

    payload = {k: v for k, v in comment_payload("/help").items() if k != "installation"}
    item = delivery("issue_comment", payload, "d")
    inbox.record([NewDelivery(item, ordering_key(item), body_of(payload))])
    await run_once(inbox, router)
    assert inbox.list_items()[0]["status"] == DEAD
    assert "names no installation" in inbox.list_items()[0]["last_error"]


async def test_same_pull_request_in_order_different_ones_in_parallel(tmp_path: Path) -> None:
    inbox, router = make_inbox(tmp_path), Router()
    log: list[tuple[str, str]] = []
    running: set[int] = set()
    overlap = 0

    @router.on(IssueCommentEvent)
    async def slow(item: IssueCommentEvent, _: Context) -> None:
        nonlocal overlap
        number = item.issue.number
        assert number not in running, "two events of one pull request ran at once"
        running.add(number)
        overlap = max(overlap, len(running))
        log.append(("start", item.comment.body or ""))
        await asyncio.sleep(0.05)
        running.discard(number)

    for index in range(4):
        for number in (1, 2, 3):
            enqueue(inbox, number, f"pr{number}-{index}", body=f"pr{number}-{index}")
    workers = WorkerPool(inbox, router, FakeApp(), features={}, concurrency=4, poll_seconds=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(workers.run(stop))
    while inbox.counts().get(DONE, 0) < 12:
        await asyncio.sleep(0.05)
    stop.set()
    await task
    for number in (1, 2, 3):
        started = [d for event, d in log if d.startswith(f"pr{number}-")]
        assert started == [f"pr{number}-{i}" for i in range(4)]
    assert overlap >= 2


async def test_workers_outlive_a_database_that_is_out_of_reach_for_a_while(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox, router = make_inbox(tmp_path), Router()
    handled = asyncio.Event()

    @router.on(IssueCommentEvent)
    async def comment(_: IssueCommentEvent, __: Context) -> None:
        handled.set()

    enqueue(inbox, 1, "d")
    real_claim, failures = inbox.claim_many, 0

    def claim_after_two_failures(limit: int, completed: list[int] | None = None) -> object:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise sa.exc.OperationalError("SELECT", {}, Exception("database is locked"))
        return real_claim(limit, completed)

    inbox.claim_many = claim_after_two_failures  # type: ignore[method-assign,assignment]
    workers = WorkerPool(inbox, router, FakeApp(), features={}, concurrency=1, poll_seconds=0.01)
    stop = asyncio.Event()
    running = asyncio.create_task(workers.run(stop))
    await asyncio.wait_for(handled.wait(), timeout=10)
    stop.set()
    await running
    assert failures == 2
    assert "could not claim work from the inbox" in caplog.text
    assert inbox.counts() == {DONE: 1}

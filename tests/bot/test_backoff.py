"""Retries back off exponentially with full jitter, and the inbox keeps an item out of reach until due."""

import random
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

import bot.inbox
from bot.context import Context
from bot.errors import TemporaryError
from bot.events import IssueCommentEvent, ordering_key
from bot.inbox import DEAD, PENDING, Inbox, NewDelivery, WorkItem, backoff, work_items
from bot.router import Router
from bot.worker import WorkerPool
from tests.bot.test_inbox import fresh_inbox
from tests.fakes import FakeApp, body_of, comment_payload, delivery
from tests.postgres import postgres_url  # noqa: F401 - fixture

BASE, CAP = 2.0, 600.0  # backoff()'s defaults, which Inbox.fail uses
DRAWS = 2_000


def bound(attempts: int, base: float = BASE, cap: float = CAP) -> float:
    """The largest delay full jitter may draw after `attempts` attempts."""
    return min(cap, base * 2.0 ** (attempts - 1))


@pytest.fixture(autouse=True)
def seeded() -> Iterator[None]:
    """Seed the global generator for this test only, and give the others their state back."""
    state = random.getstate()
    random.seed(20_261_127)
    yield
    random.setstate(state)


@pytest.fixture
def highest_draw(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """Make every jittered draw the top of its range; return the ranges asked for."""
    ranges: list[tuple[float, float]] = []

    def top(low: float, high: float) -> float:
        ranges.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", top)
    return ranges


class Clock:
    """The wall clock the inbox reads (`time.time()`), moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(1_800_000_000.0)
    monkeypatch.setattr(bot.inbox, "time", fake)
    return fake


@pytest.fixture(params=["sqlite", "postgresql"])
def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inbox]:
    yield from fresh_inbox(
        request, tmp_path, lease_seconds=60
    )  # the default attempt limit, as `orbit serve` has it


def enqueue(inbox: Inbox, delivery_id: str = "d", number: int = 7) -> None:
    payload = comment_payload("/help", number=number)
    item = delivery("issue_comment", payload, delivery_id)
    assert inbox.record([NewDelivery(item, ordering_key(item), body_of(payload))]) == [True]


def claim(inbox: Inbox) -> WorkItem:
    item = inbox.claim()
    assert item is not None, "the item was not claimable"
    return item


@dataclass(frozen=True)
class Stored:
    """The work item's row as the inbox left it."""

    status: str
    attempts: int
    available_at: float
    lease_expires_at: float | None
    last_error: str | None


def stored(inbox: Inbox) -> Stored:
    query = sa.select(
        work_items.c.status,
        work_items.c.attempts,
        work_items.c.available_at,
        work_items.c.lease_expires_at,
        work_items.c.last_error,
    )
    with inbox.engine.connect() as connection:
        return Stored(*connection.execute(query).one())


# backoff() itself


@pytest.mark.parametrize("attempts", range(1, 13))
def test_backoff_draws_uniformly_between_zero_and_its_bound(attempts: int) -> None:
    top = bound(attempts)
    draws = [backoff(attempts) for _ in range(DRAWS)]
    assert all(0.0 <= draw <= top for draw in draws), (min(draws), max(draws), top)
    assert max(draws) > 0.9 * top  # full jitter reaches the top of the range ...
    assert min(draws) < 0.1 * top  # ... and the bottom
    assert len(set(draws)) > 0.99 * DRAWS  # jitter: not a constant, not a handful of steps
    assert 0.45 * top < sum(draws) / DRAWS < 0.55 * top
    tenths = [0] * 10
    for draw in draws:
        tenths[min(int(draw / top * 10), 9)] += 1
    assert all(140 < count < 260 for count in tenths), tenths  # about 200 in each tenth of the range


def test_backoff_doubles_from_its_base_until_the_cap(highest_draw: list[tuple[float, float]]) -> None:
    tops = [backoff(attempts) for attempts in range(1, 16)]
    assert tops == [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600, 600, 600, 600]
    assert all(low == 0 for low, _ in highest_draw)
    assert backoff(40) == CAP  # 2 * 2**39 seconds would be 35,000 years


def test_backoff_takes_its_base_and_cap(highest_draw: list[tuple[float, float]]) -> None:
    assert [backoff(attempts, base=0.5, cap=3.0) for attempts in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize("attempts", [10, 11, 12, 20])
def test_backoff_past_the_cap_still_jitters_below_it(attempts: int) -> None:
    draws = [backoff(attempts) for _ in range(DRAWS)]
    assert max(draws) <= CAP
    assert max(draws) > 0.9 * CAP
    assert min(draws) < 0.1 * CAP


def test_consecutive_draws_differ() -> None:
    assert len({backoff(6) for _ in range(20)}) == 20


# Through the inbox


def test_a_temporary_failure_is_due_again_within_the_backoff_bound(inbox: Inbox, clock: Clock) -> None:
    enqueue(inbox)
    delays = []
    for attempts in range(1, inbox.max_attempts):
        item = claim(inbox)
        assert item.attempts == attempts
        failed_at = clock.now
        assert inbox.fail(item, f"GitHub answered 502 ({attempts})", temporary=True) == PENDING
        status, stored_attempts, due, lease, reason = astuple(stored(inbox))
        assert (status, stored_attempts, lease, reason) == (
            PENDING,
            attempts,
            None,
            f"GitHub answered 502 ({attempts})",
        )
        delay = due - failed_at
        assert 0 < delay <= bound(attempts), (attempts, delay)
        delays.append(delay / bound(attempts))
        clock.now = failed_at + delay / 2
        assert inbox.claim() is None, "claimed before it was due"
        clock.now = due + 0.01
    assert min(delays) < 0.9  # the delays are drawn, not always the bound
    claim(inbox)


def test_temporary_failures_back_off_exponentially_then_go_dead(
    inbox: Inbox, clock: Clock, highest_draw: list[tuple[float, float]]
) -> None:
    enqueue(inbox)
    delays = []
    for _ in range(1, inbox.max_attempts):
        item = claim(inbox)
        failed_at = clock.now
        assert inbox.fail(item, "GitHub answered 503", temporary=True) == PENDING
        due = stored(inbox).available_at
        delays.append(due - failed_at)
        clock.now = due - 0.01
        assert inbox.claim() is None, f"claimed 10 ms before it was due, after attempt {item.attempts}"
        clock.now = due
    assert delays == [2, 4, 8, 16, 32]
    last = claim(inbox)
    assert last.attempts == inbox.max_attempts == 6
    assert inbox.fail(last, "GitHub answered 503", temporary=True) == DEAD
    dead = stored(inbox)
    assert (dead.status, dead.attempts, dead.lease_expires_at, dead.last_error) == (
        DEAD,
        6,
        None,
        "GitHub answered 503",
    )
    clock.now += 1e6
    assert inbox.claim() is None, "a dead item was claimed again"


def test_a_retry_after_longer_than_the_backoff_wins(
    inbox: Inbox, clock: Clock, highest_draw: list[tuple[float, float]]
) -> None:
    enqueue(inbox)
    failed_at = clock.now
    assert inbox.fail(claim(inbox), "rate limited", temporary=True, retry_after=30.0) == PENDING
    assert stored(inbox).available_at == failed_at + 30
    clock.now = failed_at + 29.99
    assert inbox.claim() is None, "claimed before Retry-After had passed"
    clock.now = failed_at + 30
    second = claim(inbox)
    assert second.attempts == 2
    # A Retry-After shorter than the backoff does not shorten it: attempt 2 waits up to 4 s.
    failed_at = clock.now
    assert inbox.fail(second, "rate limited", temporary=True, retry_after=0.5) == PENDING
    assert stored(inbox).available_at == failed_at + bound(2)


def test_retry_after_with_jitter_is_never_shorter_than_asked(inbox: Inbox, clock: Clock) -> None:
    for index in range(20):
        enqueue(inbox, f"d{index}", number=index)
    failed_at = clock.now
    for _ in range(20):
        assert inbox.fail(claim(inbox), "rate limited", temporary=True, retry_after=1.5) == PENDING
    with inbox.engine.connect() as connection:
        due = list(connection.scalars(sa.select(work_items.c.available_at)))
    assert all(failed_at + 1.5 <= when <= failed_at + bound(1) for when in due)
    assert len(set(due)) > 1  # where the backoff drew more than 1.5 s it was used


def test_a_due_item_is_claimable_on_the_real_clock(
    inbox: Inbox, highest_draw: list[tuple[float, float]]
) -> None:
    enqueue(inbox)
    assert inbox.fail(claim(inbox), "GitHub answered 502", temporary=True) == PENDING
    assert inbox.claim() is None  # due in 2 s
    with inbox.engine.begin() as connection:
        connection.execute(work_items.update().values(available_at=work_items.c.available_at - bound(1)))
    assert claim(inbox).attempts == 2


async def test_the_worker_hands_retry_after_to_the_inbox(
    inbox: Inbox, clock: Clock, highest_draw: list[tuple[float, float]]
) -> None:
    router = Router()
    errors: list[Exception] = [TemporaryError("GitHub answered 429", retry_after=45), KeyError("head")]

    @router.on(IssueCommentEvent)
    async def fail(_: IssueCommentEvent, __: Context) -> None:
        raise errors.pop(0)

    workers = WorkerPool(inbox, router, FakeApp(), features={})
    enqueue(inbox)
    failed_at = clock.now
    await workers.handle(claim(inbox))
    assert stored(inbox).available_at == failed_at + 45
    clock.now += 45
    await workers.handle(claim(inbox))  # a handler bug backs off like any temporary failure
    status, attempts, due, _, reason = astuple(stored(inbox))
    assert (status, attempts, reason) == (PENDING, 2, "KeyError: 'head'")
    assert due == clock.now + bound(2)

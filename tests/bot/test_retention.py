"""The retention pass: handled deliveries past the retention are deleted, a small batch at a time."""

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.inbox import DEAD, DONE, PENDING, PRUNE_BATCH, Inbox, deliveries, work_items
from bot.worker import Retention
from tests.bot.test_inbox import fresh_inbox, new
from tests.postgres import postgres_url  # noqa: F401 - fixture

DAY = 86_400.0


@pytest.fixture(params=["sqlite", "postgresql"])
def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inbox]:
    yield from fresh_inbox(request, tmp_path)


def handled(inbox: Inbox, count: int, age_days: float, prefix: str) -> None:
    """Record `count` deliveries (one pull request each), claim and complete them, then age them."""
    inbox.record([new(number, f"{prefix}-{number}") for number in range(count)])
    items = inbox.claim_many(count)
    inbox.complete_many([item.id for item in items])
    age(inbox, prefix, age_days)


def age(inbox: Inbox, prefix: str, days: float) -> None:
    """Make the items of `prefix` look `days` old."""
    inbox.write(
        lambda connection: connection.execute(
            work_items.update()
            .where(work_items.c.delivery_id.like(f"{prefix}-%"))
            .values(available_at=time.time() - days * DAY)
        )
    )


def stored_ids(inbox: Inbox) -> set[str]:
    return set(inbox.read(lambda connection: list(connection.scalars(sa.select(deliveries.c.delivery_id)))))


async def test_done_deliveries_past_the_retention_go_with_their_items(inbox: Inbox) -> None:
    handled(inbox, 3, age_days=15, prefix="old")
    handled(inbox, 2, age_days=13, prefix="recent")
    inbox.record([new(100, "old-pending")])  # unhandled: kept, however old
    age(inbox, "old-pending", 30)

    assert await Retention(inbox, days=14).run_once() == 3

    assert stored_ids(inbox) == {"recent-0", "recent-1", "old-pending"}
    assert inbox.counts() == {DONE: 2, PENDING: 1}


async def test_dead_letters_are_kept_for_a_retry(inbox: Inbox) -> None:
    inbox.record([new(1, "dead-one")])
    item = inbox.claim()
    assert item is not None
    inbox.fail(item, "broken", temporary=False)
    age(inbox, "dead", 60)

    assert await Retention(inbox, days=14).run_once() == 0
    assert inbox.counts() == {DEAD: 1}


def test_one_batch_deletes_at_most_its_limit_oldest_first(inbox: Inbox) -> None:
    handled(inbox, 5, age_days=20, prefix="older")
    handled(inbox, 5, age_days=16, prefix="newer")

    assert inbox.prune_batch(time.time() - 14 * DAY, limit=4) == 4
    left = stored_ids(inbox)
    assert len(left) == 6
    assert {f"newer-{n}" for n in range(5)} <= left  # the oldest went first


@pytest.mark.parametrize("inbox", ["sqlite"], indirect=True)
async def test_a_pass_over_many_runs_in_batches_until_none_is_left(inbox: Inbox) -> None:
    count = PRUNE_BATCH * 2 + 7
    handled(inbox, count, age_days=30, prefix="many")
    batches: list[int] = []
    prune_batch = inbox.prune_batch

    def counted(before: float, limit: int = PRUNE_BATCH) -> int:
        deleted = prune_batch(before, limit)
        batches.append(deleted)
        return deleted

    inbox.prune_batch = counted  # type: ignore[method-assign]
    assert await Retention(inbox, days=14, rest_ratio=0).run_once() == count
    assert batches == [PRUNE_BATCH, PRUNE_BATCH, 7]  # each its own short transaction
    assert inbox.counts() == {}
    assert stored_ids(inbox) == set()


@pytest.mark.parametrize("inbox", ["sqlite"], indirect=True)
async def test_the_pass_rests_after_each_batch_so_that_ingest_goes_first(inbox: Inbox) -> None:
    """A batch holds SQLite's one writer: the pass rests `rest_ratio` times as long as a batch took.

    A pruning worker at its lower CPU priority that held the writer back to back took a fifth of the
    ingest's throughput in the soak benchmark; resting bounds its share of the writer.
    """
    handled(inbox, PRUNE_BATCH * 3, age_days=30, prefix="many")
    spans: list[tuple[float, float]] = []
    prune_batch = inbox.prune_batch

    def slow(before: float, limit: int = PRUNE_BATCH) -> int:
        began = time.monotonic()
        time.sleep(0.01)  # a batch that holds the writer 10 ms
        deleted = prune_batch(before, limit)
        spans.append((began, time.monotonic()))
        return deleted

    inbox.prune_batch = slow  # type: ignore[method-assign]
    assert await Retention(inbox, days=14, rest_ratio=4).run_once() == PRUNE_BATCH * 3
    assert len(spans) == 4  # three full batches, then one that finds nothing left
    for (began, ended), (next_began, _) in itertools.pairwise(spans):
        assert next_began - ended >= 4 * (ended - began)  # the writer was left to others meanwhile
    writer_share = sum(ended - began for began, ended in spans[:-1]) / (spans[-1][0] - spans[0][0])
    assert writer_share <= 1 / 5


def test_the_rest_is_for_sqlite_s_one_writer_and_bounded(inbox: Inbox) -> None:
    retention = Retention(inbox, days=14)
    if inbox.writes_locally:
        assert retention.rest_after(0.002) == pytest.approx(0.038)  # 19 times the batch
        assert retention.rest_after(5.0) == Retention.MAX_REST_SECONDS  # a starved batch: 1 s, no more
    else:
        assert retention.rest_after(0.002) == 0.0  # PostgreSQL: the ingest waits for no one writer

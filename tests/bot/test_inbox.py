"""The inbox on SQLite and on a real PostgreSQL server: dedupe, order, leases, retries, dead letters."""

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.events import ordering_key
from bot.inbox import (
    DEAD,
    DONE,
    PENDING,
    RUNNING,
    WAITING,
    Inbox,
    NewDelivery,
    WorkItem,
    deliveries,
    make_engine,
    metadata,
    work_items,
)
from bot.payload_codec import pack
from tests.fakes import body_of, comment_payload, delivery
from tests.postgres import empty_database, postgres_url  # noqa: F401 - fixtures


def fresh_inbox(
    request: pytest.FixtureRequest, tmp_path: Path, lease_seconds: float = 300.0, max_attempts: int = 6
) -> Iterator[Inbox]:
    """Yield an empty inbox on the database `request.param` names: SQLite, or the test PostgreSQL."""
    url = (
        f"sqlite:///{tmp_path / 'inbox.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = make_engine(url)
    metadata.drop_all(engine)
    box = Inbox(engine, lease_seconds, max_attempts)
    box.create_schema()
    yield box
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inbox]:
    yield from fresh_inbox(request, tmp_path, lease_seconds=60, max_attempts=3)


def new(number: int = 7, delivery_id: str | None = None) -> NewDelivery:
    payload = comment_payload("/help", number=number)
    item = delivery("issue_comment", payload, delivery_id)
    return NewDelivery(item, ordering_key(item), body_of(payload))


def test_a_delivery_is_recorded_once(inbox: Inbox) -> None:
    assert inbox.record([new(delivery_id="a"), new(delivery_id="b"), new(delivery_id="a")]) == [
        True,
        True,
        False,
    ]
    assert inbox.record([new(delivery_id="b")]) == [False]
    assert inbox.counts() == {PENDING: 1, WAITING: 1}  # b waits behind a: the same pull request


def test_claimed_payload_round_trips(inbox: Inbox) -> None:
    inbox.record([new(delivery_id="a")])
    item = inbox.claim()
    assert item is not None
    assert item.attempts == 1
    assert item.delivery.delivery_id == "a"
    assert item.delivery.payload["comment"]["body"] == "/help"


def test_one_pull_request_in_order_others_in_parallel(inbox: Inbox) -> None:
    inbox.record([new(1, "pr1-first"), new(1, "pr1-second"), new(2, "pr2-first")])
    first = inbox.claim()
    second = inbox.claim()
    assert first is not None and second is not None
    assert (first.delivery.delivery_id, second.delivery.delivery_id) == ("pr1-first", "pr2-first")
    assert inbox.claim() is None  # pr1-second waits for pr1-first
    inbox.complete(first)
    third = inbox.claim()
    assert third is not None and third.delivery.delivery_id == "pr1-second"


def test_an_expired_lease_is_claimed_again(inbox: Inbox) -> None:
    inbox.lease_seconds = 0.2
    inbox.record([new(delivery_id="a")])
    assert inbox.claim() is not None
    assert inbox.claim() is None
    time.sleep(0.3)
    again = inbox.claim()
    assert again is not None
    assert again.attempts == 2


def test_temporary_failures_back_off_then_go_dead(inbox: Inbox) -> None:
    inbox.record([new(delivery_id="a")])
    for attempt in range(1, 4):
        item = inbox.claim()
        assert item is not None and item.attempts == attempt
        status = inbox.fail(
            item, "GitHub answered 502", temporary=True, retry_after=0.0 if attempt < 3 else None
        )
        _make_due(inbox)
    assert status == DEAD
    dead = inbox.list_items(DEAD)
    assert dead[0]["last_error"] == "GitHub answered 502"
    assert dead[0]["event"] == "issue_comment"


def test_retry_after_is_honoured(inbox: Inbox) -> None:
    inbox.record([new(delivery_id="a")])
    item = inbox.claim()
    assert item is not None
    inbox.fail(item, "rate limited", temporary=True, retry_after=30)
    assert inbox.claim() is None
    with inbox.engine.connect() as connection:
        available = connection.execute(sa.text("SELECT available_at FROM work_items")).scalar_one()
    assert available >= time.time() + 29


def test_a_permanent_failure_is_dead_at_once_and_can_be_retried(inbox: Inbox) -> None:
    inbox.record([new(delivery_id="a")])
    item = inbox.claim()
    assert item is not None
    assert inbox.fail(item, "GitHub answered 404", temporary=False) == DEAD
    assert inbox.claim() is None
    assert inbox.retry(item.id)
    assert not inbox.retry(item.id)  # no longer dead
    again = inbox.claim()
    assert again is not None and again.attempts == 1
    inbox.complete(again)
    assert inbox.counts() == {DONE: 1}


def test_concurrent_claimers_never_share_an_item(inbox: Inbox) -> None:
    inbox.record([new(number, f"d{number}") for number in range(40)])
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer() -> None:
        while (item := inbox.claim()) is not None:
            with lock:
                claimed.append(item.delivery.delivery_id)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(f"d{n}" for n in range(40))


def _make_due(inbox: Inbox) -> None:
    with inbox.engine.begin() as connection:
        connection.execute(sa.text("UPDATE work_items SET available_at = 0"))


def test_replicas_starting_at_once_on_an_empty_postgresql_create_the_inbox_in_turns(
    empty_database: str,  # noqa: F811 - the fixture
) -> None:
    inboxes = [Inbox(make_engine(empty_database)) for _ in range(4)]
    start = threading.Barrier(len(inboxes))

    def create(inbox: Inbox) -> None:
        start.wait()
        inbox.create_schema()  # without the advisory lock one of them fails on pg_type's unique index

    with ThreadPoolExecutor(len(inboxes)) as pool:
        list(pool.map(create, inboxes))
    assert inboxes[0].counts() == {}
    for inbox in inboxes:
        inbox.engine.dispose()


def _ids(items: list[WorkItem]) -> list[str]:
    return [item.delivery.delivery_id for item in items]


def test_a_burst_on_one_pull_request_waits_in_order_and_the_next_is_released_as_each_ends(
    inbox: Inbox,
) -> None:
    inbox.record([new(7, f"pr7-{i}") for i in range(4)] + [new(8, "pr8-0")])
    assert inbox.counts() == {PENDING: 2, WAITING: 3}
    first = inbox.claim_many(10)
    assert _ids(first) == ["pr7-0", "pr8-0"]
    # Completed in the claim's own transaction: pr7-1 is released and taken by the same claim.
    second = inbox.claim_many(10, completed=[first[0].id])
    assert _ids(second) == ["pr7-1"]
    assert inbox.fail(second[0], "GitHub answered 404", temporary=False) == DEAD  # dead releases too
    third = inbox.claim_many(10)
    assert _ids(third) == ["pr7-2"]
    inbox.fail(third[0], "GitHub answered 502", temporary=True, retry_after=0.0)  # a retry keeps its turn
    _make_due(inbox)
    again = inbox.claim_many(10)
    assert _ids(again) == ["pr7-2"] and again[0].attempts == 2
    inbox.complete_many([again[0].id])
    assert _ids(inbox.claim_many(10)) == ["pr7-3"]
    assert inbox.counts() == {DONE: 2, DEAD: 1, RUNNING: 2}


def test_an_item_recorded_behind_an_unfinished_one_waits_until_it_is_done(inbox: Inbox) -> None:
    inbox.record([new(7, "first")])
    item = inbox.claim()
    assert item is not None
    inbox.record([new(7, "second")])  # a later batch: the key is busy with a running item
    assert inbox.claim() is None
    inbox.complete(item)
    later = inbox.claim()
    assert later is not None and later.delivery.delivery_id == "second"


def test_a_database_from_before_waiting_still_runs_one_item_of_a_pull_request_at_a_time(
    inbox: Inbox,
) -> None:
    inbox.record([new(7, "old-1")])
    inbox.record([new(8, "other")])
    key = ordering_key(new(7).delivery)
    with inbox.engine.begin() as connection:  # as an older orbit queued them: both pending, one key
        connection.execute(
            work_items.update().where(work_items.c.delivery_id == "other").values(ordering_key=key)
        )
    claimed = inbox.claim_many(10)
    assert _ids(claimed) == ["old-1"]


def test_replicas_recording_one_pull_request_at_once_queue_one_pending_item(inbox: Inbox) -> None:
    threads, rounds = 6, 15
    start = threading.Barrier(threads)

    def record(index: int) -> None:
        for number in range(rounds):  # each round a new pull request, recorded by every thread at once
            start.wait()
            inbox.record([new(number, f"r{number}-{index}")])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(record, range(threads)))
    assert inbox.counts() == {PENDING: rounds, WAITING: rounds * (threads - 1)}


def test_an_inbox_made_by_an_older_orbit_gets_the_new_indexes(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    metadata.create_all(engine)
    with engine.begin() as connection:
        for index in work_items.indexes:
            connection.execute(sa.text(f"DROP INDEX {index.name}"))
    Inbox(engine).create_schema()
    names = {index["name"] for index in sa.inspect(engine).get_indexes("work_items")}
    assert {index.name for index in work_items.indexes} <= names
    engine.dispose()


def test_a_delivery_recorded_while_its_keys_last_item_finishes_is_released(
    empty_database: str,  # noqa: F811 - the fixture
) -> None:
    """PostgreSQL, two replicas: one records a second item of a pull request (it waits, not committed
    yet, the key's row locked) while the other finishes the first. The finish does not wait for the
    key: it goes on, and the stranded pass releases the item its release could not see."""
    box = Inbox(make_engine(empty_database))
    box.create_schema()
    first, second = new(9, "first"), new(9, "second")
    box.record([first])
    claimed = box.claim()
    assert claimed is not None
    recording = box.engine.connect()
    transaction = recording.begin()  # the other replica's `record`, midway: key locked, row written
    stored = {"event": "issue_comment", "action": "created", "payload": pack(second.body)}
    recording.execute(deliveries.insert().values(delivery_id="second", received_at=time.time(), **stored))
    waiting = {"ordering_key": second.ordering_key, "status": WAITING, "attempts": 0}
    recording.execute(work_items.insert().values(delivery_id="second", available_at=time.time(), **waiting))
    with ThreadPoolExecutor(1) as pool:
        finishing = pool.submit(box.complete_many, [claimed.id])
        finishing.result(timeout=5)  # it did not wait for the key's lock
        transaction.commit()
    recording.close()
    assert box.counts() == {DONE: 1, WAITING: 1}
    assert box.release_stranded() == 1
    assert box.counts() == {DONE: 1, PENDING: 1}  # not left waiting behind a finished item
    box.engine.dispose()


def test_a_dead_item_retried_waits_for_its_keys_running_item(inbox: Inbox) -> None:
    """On both databases: a dead item retried while a later item of its pull request runs does not
    run beside it; it runs once that item is done."""
    inbox.record([new(9, "early")])
    (early,) = inbox.claim_many(1)
    inbox.fail(early, "GitHub answered 422", temporary=False)
    inbox.record([new(9, "late")])
    (late,) = inbox.claim_many(1)
    assert inbox.retry(early.id)
    assert inbox.claim_many(10) == [], "the retried item ran beside the key's running one"
    (again,) = inbox.claim_many(10, completed=[late.id])
    assert (again.delivery.delivery_id, again.attempts) == ("early", 1)


def test_replicas_recording_the_same_pull_requests_in_other_orders_do_not_deadlock(
    empty_database: str,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL: the trigger locks each new item's key; batches lock them in one order, else two
    replicas recording the same pull requests' deliveries deadlock, and the batch is stored again
    one delivery at a time."""
    box = Inbox(make_engine(empty_database))
    box.create_schema()
    alone: list[str] = []
    record_alone = Inbox._record_alone

    def counted(self: Inbox, item: NewDelivery) -> bool | Exception:
        alone.append(item.delivery.delivery_id)
        return record_alone(self, item)

    monkeypatch.setattr(Inbox, "_record_alone", counted)

    def replica(name: str, numbers: list[int]) -> None:
        for round_ in range(40):
            box.record([new(number, f"{name}-{round_}-{number}") for number in numbers])

    threads = [
        threading.Thread(target=replica, args=("a", [1, 2, 3, 4, 5, 6])),
        threading.Thread(target=replica, args=("b", [6, 5, 4, 3, 2, 1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert alone == [], "a batch failed (deadlocked) and was stored again one at a time"
    assert sum(box.counts().values()) == 2 * 40 * 6
    box.engine.dispose()


def test_pruning_forgets_the_lock_rows_of_keys_with_no_work_left(
    empty_database: str,  # noqa: F811 - the fixture
) -> None:
    """PostgreSQL: each ordering key has a row whose lock orders it; a key whose work is all pruned
    loses its row (else one stays for every delivery without a pull request), a busy key keeps it."""
    box = Inbox(make_engine(empty_database))
    box.create_schema()
    box.record([new(1, "one"), new(2, "two-a"), new(2, "two-b")])
    done = box.claim_many(10)
    assert sorted(item.delivery.delivery_id for item in done) == ["one", "two-a"]
    box.complete_many([item.id for item in done])

    def keys() -> list[str]:
        with box.engine.connect() as connection:
            return sorted(connection.scalars(sa.text("SELECT ordering_key FROM work_keys")))

    assert len(keys()) == 2
    assert box.prune_batch(before=time.time() + 60) == 2
    assert keys() == [new(2).ordering_key], "the key with a waiting item keeps its row"
    box.engine.dispose()

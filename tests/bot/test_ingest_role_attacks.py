"""What code of an attacker in the ingest's pod can do with the ingest's database role, done: each test
performs one attack and says what the workers must still do (start, claim, release, stay ready)."""

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx
import pytest
import sqlalchemy as sa

import bot.app
from bot import inbox_schema
from bot.app import build_app
from bot.cli import main
from bot.delivery import Delivery
from bot.inbox import DONE, LOCK_KEY, PENDING, RUNNING, WAITING, Inbox, NewDelivery, make_engine
from bot.inbox_schema import SchemaLockError
from bot.ingest_grants import grant_ingest
from bot.payload_codec import pack
from bot.settings import Settings, SettingsError
from tests.bot.test_ingest_grants import as_role, ingest_role, post_job, settings
from tests.postgres import empty_database, postgres_url
from tests.serving import serve_in_thread

assert postgres_url and empty_database and ingest_role  # fixtures, used by name
pytestmark = pytest.mark.slow
KEY = "octo-org/model#7"
T = TypeVar("T")


@pytest.fixture
def workers(empty_database: str, ingest_role: str) -> Iterator[Inbox]:
    """The workers have started once: the tables, the trigger, the ingest's grants."""
    build_app(settings("worker", empty_database, ingest_role))
    inbox = Inbox(make_engine(empty_database), lease_seconds=60)
    yield inbox
    inbox.engine.dispose()


@pytest.fixture
def attacker(empty_database: str, ingest_role: str) -> Iterator[sa.Engine]:
    """A connection pool with the ingest's database URL, in the hands of whoever runs code in its pod."""
    engine = sa.create_engine(as_role(empty_database, ingest_role))
    yield engine
    engine.dispose()


def new(delivery_id: str, key: str = KEY) -> NewDelivery:
    return NewDelivery(Delivery("issue_comment", delivery_id, {"action": "created"}), key, b"{}")


def store_delivery(connection: sa.Connection, delivery_id: str) -> None:
    """Insert a delivery row as the ingest's role may: with any values it likes."""
    connection.execute(
        sa.text("INSERT INTO deliveries VALUES (:id, 'issue_comment', 'created', 0, :payload)"),
        {"id": delivery_id, "payload": pack(b"{}")},
    )


def start_error(start: Settings) -> Exception | None:
    """Start the workers; return what stopped them, if anything did."""
    try:
        build_app(start)
    except Exception as error:  # the test says which
        return error
    return None


def in_thread_within(seconds: float, work: Callable[[], T]) -> list[T]:
    """Run `work` in a thread; return its result in a list, empty if it had not returned in time."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    return result


def test_a_key_lock_held_by_the_ingest_neither_stalls_the_workers_nor_strands_the_key(
    workers: Inbox, attacker: sa.Engine
) -> None:
    workers.record([new("first"), new("second")])
    (first,) = workers.claim_many(1)
    with attacker.connect() as held:
        held.execute(sa.text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": KEY})
        # completing the key's item releases the next one: before, it waited on the lock for good
        claimed = in_thread_within(5, lambda: workers.claim_many(1, completed=[first.id]))
        assert claimed, "the claim loop waited on a lock the ingest's role held"
        assert [item.delivery.delivery_id for item in claimed[0]] == ["second"]
        held.execute(sa.text("SELECT pg_advisory_unlock_all()"))


def test_a_delivery_stranded_behind_a_taken_key_lock_is_released_by_the_periodic_pass(
    workers: Inbox, attacker: sa.Engine
) -> None:
    workers.record([new("first")])
    (first,) = workers.claim_many(1)
    # a delivery recorded while its key's last item finishes: the recorder holds the key's lock, and
    # sees the item running; the worker's release does not see the new item, not yet committed
    with workers.engine.begin() as recording:
        recording.execute(LOCK_KEY, {"key": KEY})
        store_delivery(recording, "second")
        recording.execute(
            sa.text(
                "INSERT INTO work_items (delivery_id, ordering_key, status, attempts, available_at)"
                f" VALUES ('second', '{KEY}', 'waiting', 0, 0)"
            )
        )
        assert in_thread_within(5, lambda: workers.complete(first)), "the release waited on the lock"
    with attacker.begin() as ingest:  # and the ingest's role itself queues one as waiting, key idle
        store_delivery(ingest, "third")
        ingest.execute(
            sa.text(
                "INSERT INTO work_items (delivery_id, ordering_key, status, attempts, available_at)"
                " VALUES ('third', 'octo-org/other#1', 'waiting', 0, 0)"
            )
        )
    assert workers.counts() == {DONE: 1, WAITING: 2}
    assert workers.release_stranded() == 2
    claimed = {item.delivery.delivery_id for item in workers.claim_many(10)}
    assert claimed == {"second", "third"}
    assert workers.release_stranded() == 0  # nothing left to release


def test_the_schema_lock_held_by_the_ingest_delays_a_worker_start_by_seconds_and_names_it(
    empty_database: str,
    ingest_role: str,
    attacker: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    build_app(settings("worker", empty_database, ingest_role))
    monkeypatch.setattr(inbox_schema, "SCHEMA_LOCK_WAIT_SECONDS", 0.5)
    with attacker.connect() as held, caplog.at_level(logging.WARNING):
        held.execute(sa.text("SELECT pg_advisory_lock(hashtext('orbit schema'))"))
        started = in_thread_within(10, lambda: build_app(settings("worker", empty_database, ingest_role)))
        assert started, "a worker's start waited on a lock the ingest's role held"
        held.execute(sa.text("SELECT pg_advisory_unlock_all()"))
    assert f"orbit's schema lock is held by {ingest_role}" in caplog.text


def test_a_table_lock_held_past_the_timeout_at_start_fails_it_naming_the_holder(
    empty_database: str, ingest_role: str, attacker: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_app(settings("worker", empty_database, ingest_role))
    admin = sa.create_engine(empty_database)
    with admin.begin() as connection:  # an inbox from before the trigger: the start must create it
        connection.execute(sa.text("DROP TRIGGER orbit_new_work_item ON work_items"))
    admin.dispose()
    monkeypatch.setattr(inbox_schema, "LOCK_TIMEOUT_MS", 300)
    with attacker.connect() as held:
        held.execute(sa.text("BEGIN"))
        held.execute(sa.text("LOCK TABLE work_items IN ROW EXCLUSIVE MODE"))  # what an insert takes
        start = settings("worker", empty_database, ingest_role)
        failed = in_thread_within(10, lambda: start_error(start))
        assert failed, "the start waited without end"
        assert isinstance(failed[0], SchemaLockError)
        assert f"held more than 0.3 s by {ingest_role} (pid" in str(failed[0])
        held.execute(sa.text("ROLLBACK"))
    build_app(settings("worker", empty_database, ingest_role))  # the lock gone, the start goes on


@pytest.mark.parametrize(
    "forged",
    [
        "'running', 0, 0, 1e300, NULL",  # taken by a worker, a lease for ever
        "'pending', -1000000, 1e300, NULL, NULL",  # never tried, due in a year... of years
        "'done', 3, 0, NULL, 'made up'",  # finished: its key's next item would be released at once
        "'dead', 99, 0, NULL, 'made up'",
    ],
)
def test_a_work_item_the_ingest_inserts_is_a_new_item_whatever_it_says(
    workers: Inbox, attacker: sa.Engine, forged: str
) -> None:
    with attacker.begin() as ingest:
        store_delivery(ingest, "forged")
        ingest.execute(
            sa.text(
                "INSERT INTO work_items (delivery_id, ordering_key, status, attempts, available_at,"
                f" lease_expires_at, last_error) VALUES ('forged', '{KEY}', {forged})"
            )
        )
    (row,) = workers.list_items()
    assert (row["status"], row["attempts"], row["lease_expires_at"], row["last_error"]) == (
        PENDING,
        0,
        None,
        None,
    )
    assert row["available_at"] <= time.time()
    workers.record([new("next")])  # the key is not blocked: the forged item runs, then the next
    (item,) = workers.claim_many(10)
    assert item.delivery.delivery_id == "forged" and item.attempts == 1
    (after,) = workers.claim_many(10, completed=[item.id])
    assert after.delivery.delivery_id == "next"


def test_a_new_inbox_counts_items_past_four_bytes_and_an_old_one_is_widened(
    empty_database: str, workers: Inbox
) -> None:
    admin = sa.create_engine(empty_database)
    with admin.begin() as connection:  # an inbox made before: 4-byte ids, near their end
        connection.execute(sa.text("ALTER TABLE work_items ALTER COLUMN id TYPE integer"))
        connection.execute(sa.text("ALTER SEQUENCE work_items_id_seq AS integer"))
        connection.execute(sa.text("SELECT setval('work_items_id_seq', 2147483646)"))
    workers.record([new("last of four bytes", "a")])
    with pytest.raises(sa.exc.DBAPIError, match=r"reached maximum value|out of range"):
        workers.record([new("one too many", "b")])
    workers.create_schema()  # what every worker start does
    assert workers.record([new("past four bytes", "c")]) == [True]
    assert max(row["id"] for row in workers.list_items()) >= 2**31
    admin.dispose()


def test_the_workers_refuse_to_grant_a_role_that_would_hold_their_rights(
    empty_database: str, workers: Inbox
) -> None:
    admin = sa.create_engine(empty_database, isolation_level="AUTOCOMMIT")
    suffix = uuid.uuid4().hex[:8]
    with admin.connect() as connection:
        current = connection.scalar(sa.text("SELECT current_user"))
        connection.execute(sa.text(f"CREATE ROLE super_{suffix} LOGIN SUPERUSER"))
        connection.execute(sa.text(f"CREATE ROLE member_{suffix} LOGIN IN ROLE {current}"))
    try:
        for role, said in (
            (current, "the workers' own role"),
            (f"super_{suffix}", "a superuser"),
            (f"member_{suffix}", "a member of the workers' role"),
        ):
            with pytest.raises(SettingsError, match=f"names {role}, {said}.*: give the ingest a role of its"):
                grant_ingest(admin, role)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP ROLE super_{suffix}"))
            connection.execute(sa.text(f"DROP ROLE member_{suffix}"))
        admin.dispose()


def test_an_ingest_with_the_workers_database_role_refuses_to_start_or_stops_being_ready(
    empty_database: str, postgres_url: str
) -> None:
    # the workers' role, not a superuser: it owns the tables it makes
    role = f"orbit_workers_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(empty_database, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        connection.execute(sa.text(f"GRANT CREATE ON SCHEMA public TO {role}"))
    workers_url = as_role(empty_database, role)
    try:
        with pytest.raises(SettingsError, match=r"connects as .*, which may change work items"):
            build_app(settings("ingest", empty_database))  # a superuser, from the start
        # started before the workers made the tables, it has nothing to check: then it has
        with serve_in_thread(build_app(settings("ingest", workers_url))) as ingest:
            build_app(settings("worker", workers_url))
            answer = httpx.get(f"{ingest}/readyz")
            assert (answer.status_code, answer.json()["reason"]) == (503, "SettingsError")
            assert post_job(ingest).json()["message"] == "queued"  # deliveries are still kept
        with pytest.raises(SettingsError, match=f"connects as {role}, which may change work items"):
            build_app(settings("ingest", workers_url))
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP OWNED BY {role}"))
            connection.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


def test_a_running_item_keeps_its_lease_through_the_trigger(workers: Inbox) -> None:
    # the trigger touches inserts only: a claim's update still makes an item running with a lease
    workers.record([new("only")])
    (item,) = workers.claim_many(1)
    (row,) = workers.list_items()
    assert (row["status"], row["attempts"]) == (RUNNING, 1) and row["lease_expires_at"] > time.time()
    assert item.attempts == 1


def test_orbit_inbox_in_the_ingest_says_where_to_run_it(
    workers: Inbox,
    empty_database: str,
    ingest_role: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workers.record([new("one")])
    monkeypatch.setenv("ORBIT_DATABASE_URL", as_role(empty_database, ingest_role))
    for command in (["inbox", "list"], ["inbox", "retry", "1"]):
        assert main(command) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "may not read work items" in line and "exec deploy/orbit-worker -- orbit inbox" in line


def test_running_workers_release_a_stranded_item_within_their_pass(
    workers: Inbox,
    attacker: sa.Engine,
    empty_database: str,
    ingest_role: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot.app, "STRANDED_EVERY_SECONDS", 0.2)
    with attacker.begin() as ingest:  # waiting, with nothing ahead of it
        store_delivery(ingest, "stranded")
        ingest.execute(
            sa.text(
                "INSERT INTO work_items (delivery_id, ordering_key, status, attempts, available_at)"
                f" VALUES ('stranded', '{KEY}', 'waiting', 0, 0)"
            )
        )
    with serve_in_thread(build_app(settings("worker", empty_database, ingest_role))):
        deadline = time.monotonic() + 10
        while WAITING in workers.counts() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert WAITING not in workers.counts(), "the workers left it waiting"

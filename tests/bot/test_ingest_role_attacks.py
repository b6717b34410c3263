"""What code of an attacker in the ingest's pod can do with the ingest's database role, done: each test
performs one attack and says what the workers must still do (start, claim, release, stay ready)."""

import logging
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import ProgrammingError

import bot.app
from bot import inbox as inbox_module
from bot import inbox_schema
from bot.app import build_app
from bot.cli import main
from bot.delivery import Delivery
from bot.inbox import DONE, PENDING, RUNNING, WAITING, Inbox, NewDelivery, make_engine
from bot.inbox_schema import SchemaLockError
from bot.ingest_grants import grant_ingest
from bot.payload_codec import pack
from bot.settings import Settings, SettingsError
from tests.bot.test_ingest_grants import as_role, ingest_role, post_job, settings
from tests.fakes import body_of, signed_headers
from tests.postgres import empty_database, postgres_url, running_postgres
from tests.serving import serve_in_thread

assert postgres_url and empty_database and ingest_role  # fixtures, used by name
pytestmark = pytest.mark.slow
KEY = "octo-org/model#7"
TEMP_TABLE = "CREATE TEMP TABLE t ()"
PUSHED = body_of(
    {
        "action": "synchronize",
        "number": 7,
        "pull_request": {"number": 7, "head": {"sha": "a" * 40}, "base": {"ref": "main"}},
        "repository": {"full_name": "octo-org/model"},
        "installation": {"id": 1},
    }
)
INGEST_ROLE_SQL = Path(__file__).parents[2] / "deploy/postgres/ingest-role.sql"
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


def hold_key(held: sa.Connection) -> None:
    """Begin a transaction that inserts an item of `KEY` and is never committed: the trigger holds the key."""
    held.execute(sa.text("BEGIN"))
    store_delivery(held, "held")
    held.execute(
        sa.text(
            "INSERT INTO work_items (delivery_id, ordering_key, status, available_at)"
            " VALUES ('held', :key, 'pending', 0)"
        ),
        {"key": KEY},
    )


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
        hold_key(held)
        # completing the key's item releases the next one: it does not wait on the lock for good
        started = time.monotonic()
        claimed = in_thread_within(5, lambda: workers.claim_many(1, completed=[first.id]))
        assert claimed, "the claim loop waited on a lock the ingest's role held"
        assert time.monotonic() - started < 1.0
        assert [item.delivery.delivery_id for item in claimed[0]] == ["second"]
        held.execute(sa.text("ROLLBACK"))


def test_thousands_of_items_in_one_open_transaction_do_not_fill_the_servers_lock_table(
    workers: Inbox, attacker: sa.Engine, empty_database: str
) -> None:
    workers.record([new("first"), new("second")])
    with attacker.connect() as held:
        held.execute(sa.text("BEGIN"))
        held.execute(
            sa.text(
                "INSERT INTO deliveries SELECT 'd' || g, 'issue_comment', 'created', 0, :payload"
                " FROM generate_series(1, 20000) g"
            ),
            {"payload": pack(b"{}")},
        )
        held.execute(
            sa.text(
                "INSERT INTO work_items (delivery_id, ordering_key, status, available_at)"
                " SELECT 'd' || g, 'octo-org/model#' || (1000 + g), 'pending', 0"
                " FROM generate_series(1, 20000) g"
            )
        )  # 20,000 keys locked: advisory locks would have filled the table (about 6,400 here)
        held_locks = held.scalar(sa.text("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"))
        assert held_locks < 100
        (first,) = workers.claim_many(1)  # the workers claim, complete, release and check readiness
        (second,) = workers.claim_many(1, completed=[first.id])
        workers.complete(second)
        workers.check_writable()
        fresh = sa.create_engine(empty_database)  # and a new connection, a worker starting, connects
        with fresh.connect() as connection:
            assert connection.scalar(sa.text("SELECT 1")) == 1
        fresh.dispose()
        held.execute(sa.text("ROLLBACK"))


def test_a_delivery_stranded_behind_a_taken_key_lock_is_released_by_the_periodic_pass(
    workers: Inbox, attacker: sa.Engine
) -> None:
    workers.record([new("first")])
    (first,) = workers.claim_many(1)
    # a delivery recorded while its key's last item finishes: the recorder holds the key's lock, and
    # sees the item running; the worker's release does not see the new item, not yet committed
    with workers.engine.begin() as recording:  # the trigger takes the key's lock as it inserts
        store_delivery(recording, "second")
        recording.execute(
            sa.text(
                "INSERT INTO work_items (delivery_id, ordering_key, status, attempts, available_at)"
                f" VALUES ('second', '{KEY}', 'waiting', 0, 0)"
            )
        )
        assert in_thread_within(5, lambda: workers.complete(first)), "the release waited on the lock"
    assert workers.counts() == {DONE: 1, WAITING: 1}
    assert workers.release_stranded() == 1
    claimed = {item.delivery.delivery_id for item in workers.claim_many(10)}
    assert claimed == {"second"}
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


def forge_item(attacker: sa.Engine, delivery_id: str, columns: str, values: str) -> None:
    """Store a delivery and insert its work item as the ingest's role, with the values it chose."""
    with attacker.begin() as ingest:
        store_delivery(ingest, delivery_id)
        ingest.execute(
            sa.text(
                f"INSERT INTO work_items (delivery_id, ordering_key, {columns}) VALUES (:id, :key, {values})"
            ),
            {"id": delivery_id, "key": KEY},
        )


def test_an_item_the_ingest_inserts_on_a_busy_key_waits_behind_the_keys_items(
    workers: Inbox, attacker: sa.Engine
) -> None:
    workers.record([new("running"), new("waiting")])
    (running,) = workers.claim_many(10)
    # pending, with an id before every other: to run beside the running item, or ahead of the waiting
    for forged, available in (("first id", "0"), ("due long ago", "'-Infinity'")):
        forge_item(attacker, forged, "id, status, attempts, available_at", f"-5, 'pending', 0, {available}")
    rows = {row["delivery_id"]: row for row in workers.list_items()}
    assert {name: rows[name]["status"] for name in rows} == {
        "running": RUNNING,
        "waiting": WAITING,
        "first id": WAITING,
        "due long ago": WAITING,
    }
    assert rows["running"]["id"] < rows["waiting"]["id"] < rows["first id"]["id"] < rows["due long ago"]["id"]
    assert time.time() - 60 < rows["due long ago"]["available_at"] <= time.time()
    assert workers.claim_many(10) == [], "nothing runs beside the key's running item"
    order = []
    completed = [running.id]
    while items := workers.claim_many(10, completed=completed):
        order += [item.delivery.delivery_id for item in items]
        completed = [item.id for item in items]
    assert order == ["waiting", "first id", "due long ago"]  # one at a time, in the order they came


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
        connection.execute(sa.text("SELECT setval('work_items_id_seq', 2147483645)"))
    workers.record([new("last of four bytes", "a")])
    with pytest.raises(sa.exc.DBAPIError, match=r"reached maximum value|out of range"):
        workers.record([new("one too many", "b")])
    workers.create_schema()  # what every worker start does
    assert workers.record([new("past four bytes", "c")]) == [True]
    assert max(row["id"] for row in workers.list_items()) >= 2**31
    admin.dispose()


REFUSED_ROLES = {  # how the role is made -> what the refusal says it is
    "SUPERUSER": "a superuser",
    "IN ROLE {workers}": "a member of the workers' role",
    "CREATEROLE": "a role that may make roles",
    "REPLICATION": "a replication role",
    "BYPASSRLS": "a role that bypasses row security",
    "IN ROLE pg_read_all_data": "a member of pg_read_all_data",
    "IN ROLE pg_write_all_data": "a member of pg_write_all_data",
}


@pytest.mark.parametrize("made", list(REFUSED_ROLES))
def test_the_workers_refuse_to_grant_a_role_that_would_hold_their_rights(
    empty_database: str, workers: Inbox, made: str
) -> None:
    admin = sa.create_engine(empty_database, isolation_level="AUTOCOMMIT")
    role = f"refused_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        current = connection.scalar(sa.text("SELECT current_user"))
        connection.execute(sa.text(f"CREATE ROLE {role} LOGIN {made.format(workers=current)}"))
    try:
        with pytest.raises(SettingsError, match=f"names {current}, the workers' own role"):
            grant_ingest(admin, current)
        with pytest.raises(SettingsError, match=f"names {role}, {REFUSED_ROLES[made]}.*: give the ingest"):
            grant_ingest(admin, role)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


@pytest.mark.parametrize(
    ("granted", "named"),
    [
        ("UPDATE ON work_items TO PUBLIC", "UPDATE on work_items"),
        ("SELECT ON deliveries TO PUBLIC", "SELECT on deliveries"),
        ("SELECT (last_error) ON work_items TO {group}", "SELECT (last_error) on work_items"),
        ("INSERT ON orbit_runs TO {group}", "INSERT on orbit_runs"),
        # an operator `=` for varchar made there would run as the workers, in their own statements
        ("CREATE ON SCHEMA public TO PUBLIC", "CREATE on schema public"),
        ("CREATE ON DATABASE {database} TO {group}", "CREATE on database"),
    ],
)
def test_the_workers_refuse_an_ingest_role_that_holds_more_through_public_or_a_group(
    empty_database: str, ingest_role: str, workers: Inbox, granted: str, named: str
) -> None:
    admin = sa.create_engine(empty_database, isolation_level="AUTOCOMMIT")
    group = f"group_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE ROLE {group}"))
        connection.execute(sa.text(f"GRANT {group} TO {ingest_role}"))
        database = connection.scalar(sa.text("SELECT current_database()"))
        connection.execute(sa.text(f"GRANT {granted.format(group=group, database=database)}"))
    try:
        with pytest.raises(SettingsError, match=rf"holds more than orbit grants it.*{re.escape(named)}"):
            build_app(settings("worker", empty_database, ingest_role))
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP OWNED BY {group}"))
            connection.execute(sa.text(f"DROP ROLE {group}"))
        admin.dispose()


def run_psql(url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    plain = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run(["psql", plain, *arguments], capture_output=True, text=True, check=False)


def test_the_installers_script_takes_what_could_fill_the_lock_table_and_the_ingest_still_records(
    empty_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    role = f"orbit_ingest_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(empty_database, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        workers_role = connection.scalar(sa.text("SELECT current_user"))
    made = run_psql(
        empty_database,
        *("-v", f"workers={workers_role}", "-v", f"ingest={role}", "-v", "password=secret"),
        *("-f", str(INGEST_ROLE_SQL)),
    )
    assert made.returncode == 0, made.stderr
    try:
        with caplog.at_level(logging.WARNING):
            build_app(settings("worker", empty_database, role))
        assert "database role" not in caplog.text, "the script left a gap the workers warn of"
        ingest_url = as_role(empty_database, role)
        attacker = sa.create_engine(ingest_url)
        for attack in ("SELECT pg_advisory_lock(1)", "SELECT pg_try_advisory_xact_lock(1, 2)", TEMP_TABLE):
            with pytest.raises(ProgrammingError, match="permission denied"), attacker.begin() as connection:
                connection.execute(sa.text(attack))
        attacker.dispose()
        with serve_in_thread(build_app(settings("ingest", ingest_url))) as ingest:
            assert httpx.get(f"{ingest}/readyz").json() == {"ready": True}
            for _ in range(2):  # the trigger locks the PR's key for the ingest, and sees it busy
                headers = signed_headers("pull_request", PUSHED)
                answer = httpx.post(f"{ingest}/webhook", content=PUSHED, headers=headers)
                assert answer.json()["message"] == "queued"
        inbox = Inbox(make_engine(empty_database))
        assert inbox.counts() == {PENDING: 1, WAITING: 1}
        inbox.engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP OWNED BY {role}"))
            connection.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


def test_the_workers_warn_of_what_a_default_role_may_still_do(
    empty_database: str, ingest_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        build_app(settings("worker", empty_database, ingest_role))
    warned = [record.getMessage() for record in caplog.records if "database role" in record.getMessage()]
    assert [line.split(ingest_role, 1)[1].split(":")[0] for line in warned] == [
        " may take advisory locks",
        " may create temporary tables",
        " has no connection limit",
    ]


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
    workers: Inbox, empty_database: str, ingest_role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot.app, "STRANDED_EVERY_SECONDS", 0.2)
    workers.record([new("stranded")])
    with workers.engine.begin() as connection:  # what a release that lost the race leaves
        connection.execute(sa.text("UPDATE work_items SET status = 'waiting'"))
    with serve_in_thread(build_app(settings("worker", empty_database, ingest_role))):
        deadline = time.monotonic() + 10
        while WAITING in workers.counts() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert WAITING not in workers.counts(), "the workers left it waiting"


def test_a_prepared_transaction_holding_a_lock_at_start_is_named_with_how_to_end_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A server that allows prepared transactions: their locks outlive the session that made them.
    with running_postgres("-c max_prepared_transactions=2") as url:
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text("CREATE ROLE orbit_ingest LOGIN"))
        with caplog.at_level(logging.WARNING):
            build_app(settings("worker", url, "orbit_ingest"))
        assert "orbit_ingest may prepare transactions" in caplog.text
        with admin.connect() as connection:  # an inbox from before the trigger: the start must make it
            connection.execute(sa.text("DROP TRIGGER orbit_new_work_item ON work_items"))
        attacker = sa.create_engine(as_role(url, "orbit_ingest"), isolation_level="AUTOCOMMIT")
        with attacker.connect() as connection:
            connection.execute(sa.text("BEGIN"))
            connection.execute(sa.text("LOCK TABLE work_items IN ROW EXCLUSIVE MODE"))
            connection.execute(sa.text("PREPARE TRANSACTION 'stuck'"))
        attacker.dispose()  # the session is gone; its lock is not
        monkeypatch.setattr(inbox_schema, "LOCK_TIMEOUT_MS", 300)
        failed = start_error(settings("worker", url, "orbit_ingest"))
        assert isinstance(failed, SchemaLockError)
        assert "by prepared transaction 'stuck' of orbit_ingest" in str(failed)
        assert "ROLLBACK PREPARED 'GID'" in str(failed)
        with admin.connect() as connection:
            connection.execute(sa.text("ROLLBACK PREPARED 'stuck'"))
        build_app(settings("worker", url, "orbit_ingest"))
        admin.dispose()


def test_the_ingest_cannot_record_from_an_old_snapshot_to_run_ahead_of_a_keys_items(
    workers: Inbox, attacker: sa.Engine
) -> None:
    with attacker.connect() as ingest:
        ingest.execute(sa.text("BEGIN ISOLATION LEVEL REPEATABLE READ"))
        ingest.execute(sa.text("SELECT count(*) FROM ingest_health"))  # the snapshot is taken
        workers.record([new("first"), new("second")])  # the key is busy from now on
        store_delivery(ingest, "ahead")
        with pytest.raises(sa.exc.DBAPIError, match="READ COMMITTED transactions only"):
            ingest.execute(
                sa.text(
                    "INSERT INTO work_items (delivery_id, ordering_key, status, attempts, available_at)"
                    " VALUES ('ahead', :key, 'pending', 0, 0)"
                ),
                {"key": KEY},
            )
        ingest.execute(sa.text("ROLLBACK"))
    assert [row["delivery_id"] for row in workers.list_items()] == ["second", "first"]


def test_a_run_of_the_stranded_pass_releases_every_stranded_key_past_its_page(workers: Inbox) -> None:
    keys = inbox_module.STRANDED_LIMIT * 2 + 500
    workers.record([new(f"d{number}", f"octo-org/model#{number}") for number in range(keys)])
    with workers.engine.begin() as connection:  # as if each release had lost its race
        connection.execute(sa.text("UPDATE work_items SET status = 'waiting'"))
    assert workers.release_stranded() == keys
    assert workers.counts() == {PENDING: keys}


@pytest.mark.parametrize("known", [True, False], ids=["a key with a row", "a new key"])
def test_a_key_the_ingest_holds_holds_up_no_other_recording(
    workers: Inbox, attacker: sa.Engine, known: bool
) -> None:
    if known:  # the key has had work: its row exists
        workers.record([new("earlier")])
        workers.complete_many([item.id for item in workers.claim_many(1)])
    with attacker.connect() as held:
        hold_key(held)
        # the other ingest replica records this key's delivery and another's, in one batch
        started = time.monotonic()
        recorded = in_thread_within(5, lambda: workers.record([new("legit"), new("other", "octo-org/b#1")]))
        assert recorded == [[True, True]], "the recording waited on the key the ingest's role held"
        assert time.monotonic() - started < 1.0
        held.execute(sa.text("ROLLBACK"))
    statuses = {row["delivery_id"]: row["status"] for row in workers.list_items()}
    assert (statuses["legit"], statuses["other"]) == (WAITING, PENDING)  # in order, whatever was held
    assert workers.release_stranded() == 1
    assert {item.delivery.delivery_id for item in workers.claim_many(10)} == {"legit", "other"}

"""An ingest's own PostgreSQL role (the `ha` overlay): it stores deliveries, and writes nothing the
workers trust, even when code of an attacker runs in the ingest's pod with its database URL."""

import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from bot.app import build_app
from bot.cli import main
from bot.inbox import PENDING, Inbox, make_engine
from bot.ingest_grants import grant_ingest
from bot.settings import Settings, SettingsError
from tests.bot.test_bot_process import PEM
from tests.bot.test_roles import JOB_QUEUED
from tests.fakes import SECRET, body_of, signed_headers
from tests.postgres import empty_database, postgres_url
from tests.serving import serve_in_thread

assert postgres_url and empty_database  # fixtures, used by name
pytestmark = pytest.mark.slow


@pytest.fixture
def ingest_role(empty_database: str) -> Iterator[str]:
    """Create a login role of its own for the ingest (roles are the server's, not the database's)."""
    role = f"orbit_ingest_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(empty_database, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
    try:
        yield role
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP OWNED BY {role}"))
            connection.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


def as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role).render_as_string(hide_password=False)


def settings(role: str, url: str, ingest_role: str = "") -> Settings:
    acts = role != "ingest"  # an ingest holds no App id or key
    return Settings(
        github_app_id=4242 if acts else None,
        github_private_key=PEM if acts else None,
        webhook_secret=SECRET.decode(),
        database_url=url,
        runners_enabled=False,
        redeliver_interval_seconds=0,
        role=role,
        ingest_database_role=ingest_role,
    )


def post_job(url: str) -> httpx.Response:
    body = body_of(JOB_QUEUED)
    return httpx.post(f"{url}/webhook", content=body, headers=signed_headers("workflow_job", body))


ATTACKS = {
    "record a run as orbit's": "INSERT INTO orbit_runs (run_id, repository, purpose, workflow, trigger,"
    " title, head_sha, created_at) VALUES (10, 'octo-org/model', 'deploy', 'deploy.yml', 'x', 'x', 'x', 0)",
    "mark work done": "UPDATE work_items SET status = 'done'",
    "delete a delivery": "DELETE FROM deliveries",
    "read the App's installations": "SELECT * FROM installations",
    "create a table": "CREATE TABLE orbit_runs_shadow (run_id bigint)",
    "read a delivery's payload": "SELECT payload FROM deliveries",
    "read a handler's error": "SELECT last_error FROM work_items",
    "delete the workers' readiness row": "DELETE FROM health",
    "lock the workers' readiness": "LOCK TABLE health IN ACCESS EXCLUSIVE MODE",
    "lock work items against the workers' schema changes": "LOCK TABLE work_items IN SHARE MODE",
    "change the new item trigger": "DROP TRIGGER orbit_new_work_item ON work_items",
    "lock an ordering key": "SELECT * FROM work_keys FOR UPDATE",
    "move the id sequence": "SELECT setval(pg_get_serial_sequence('work_items', 'id'), 2147483647)",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_the_ingest_role_stores_deliveries_and_nothing_the_workers_trust(
    empty_database: str, ingest_role: str, attack: str
) -> None:
    build_app(settings("worker", empty_database, ingest_role))  # the workers: tables, then the grants
    ingest_url = as_role(empty_database, ingest_role)
    with serve_in_thread(build_app(settings("ingest", ingest_url))) as ingest:
        assert httpx.get(f"{ingest}/readyz").json() == {"ready": True}
        answer = post_job(ingest)
        assert (answer.status_code, answer.json()["message"]) == (202, "queued")
    inbox = Inbox(make_engine(empty_database))
    assert inbox.counts() == {PENDING: 1}

    engine = sa.create_engine(ingest_url)
    refused = r"permission denied|must be owner"
    with pytest.raises(ProgrammingError, match=refused), engine.begin() as connection:
        connection.execute(sa.text(ATTACKS[attack]))
    engine.dispose()
    assert inbox.counts() == {PENDING: 1}
    inbox.engine.dispose()


def test_the_grants_are_the_same_when_given_again_and_a_role_name_is_checked(
    empty_database: str, ingest_role: str
) -> None:
    build_app(settings("worker", empty_database, ingest_role))
    engine = sa.create_engine(empty_database)
    grant_ingest(engine, ingest_role)  # every worker start grants again
    with engine.connect() as connection:
        granted = connection.execute(
            sa.text(
                "SELECT table_name, privilege_type FROM information_schema.role_table_grants"
                " WHERE grantee = :role ORDER BY 1, 2"
            ),
            {"role": ingest_role},
        ).all()
        read = connection.execute(
            sa.text(
                "SELECT table_name, column_name FROM information_schema.column_privileges"
                " WHERE grantee = :role AND privilege_type = 'SELECT' ORDER BY 1, 2"
            ),
            {"role": ingest_role},
        ).all()
    assert [tuple(row) for row in granted] == [
        ("deliveries", "INSERT"),
        ("ingest_health", "DELETE"),
        ("ingest_health", "INSERT"),
        ("ingest_health", "SELECT"),
        ("work_items", "INSERT"),
    ]
    assert [tuple(row) for row in read] == [
        ("deliveries", "delivery_id"),
        ("ingest_health", "checked_at"),
        ("ingest_health", "id"),
        ("work_items", "id"),
        ("work_items", "ordering_key"),
        ("work_items", "status"),
    ]
    with pytest.raises(ValueError, match="not a PostgreSQL role name"):
        grant_ingest(engine, "orbit; DROP TABLE deliveries")
    engine.dispose()


def test_an_ingest_on_postgresql_creates_no_table_and_is_not_ready_before_the_workers(
    empty_database: str, ingest_role: str
) -> None:
    ingest_url = as_role(empty_database, ingest_role)
    with serve_in_thread(build_app(settings("ingest", ingest_url))) as ingest:
        assert httpx.get(f"{ingest}/readyz").status_code == 503
        refused = post_job(ingest)
        assert refused.status_code >= 500, "refused, so that GitHub's delivery comes back"
        assert not sa.inspect(sa.create_engine(empty_database)).get_table_names()
        build_app(settings("worker", empty_database, ingest_role))  # the workers start
        assert httpx.get(f"{ingest}/readyz").status_code == 200
        assert post_job(ingest).json()["message"] == "queued"


def test_a_worker_names_an_ingest_role_the_database_lacks_and_how_to_make_it(
    empty_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SettingsError, match="the database has no role orbit_nobody; create it"):
        build_app(settings("worker", empty_database, "orbit_nobody"))
    # `orbit serve` says so in one line and stops before serving, with the status of a bad setting
    for name, value in {
        "ORBIT_GITHUB_APP_ID": "4242",
        "ORBIT_GITHUB_PRIVATE_KEY": PEM,
        "ORBIT_WEBHOOK_SECRET": SECRET.decode(),
        "ORBIT_DATABASE_URL": empty_database,
        "ORBIT_ROLE": "worker",
        "ORBIT_INGEST_DATABASE_ROLE": "orbit_nobody",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--port", "1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("orbit: ORBIT_INGEST_DATABASE_ROLE: the database has no role orbit_nobody")


def test_workers_starting_at_once_grant_at_once_without_failing(
    empty_database: str, ingest_role: str
) -> None:
    # Concurrent GRANTs of one table fail one of them in PostgreSQL ("tuple concurrently updated"):
    # replicas of the workers start together.
    build_app(settings("worker", empty_database, ingest_role))
    failures: list[Exception] = []

    def start() -> None:
        engine = sa.create_engine(empty_database)
        for _ in range(10):
            try:
                grant_ingest(engine, ingest_role)
            except Exception as error:  # every failure is the finding
                failures.append(error)
        engine.dispose()

    starts = [threading.Thread(target=start) for _ in range(6)]
    for each in starts:
        each.start()
    for each in starts:
        each.join()
    assert failures == []

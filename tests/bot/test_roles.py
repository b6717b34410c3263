"""`orbit serve --role`: an ingest process only stores, a worker process only handles; together they work."""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import httpx
import pytest

from bot.app import build_app, every_feature
from bot.context import Context
from bot.delivery import Delivery
from bot.inbox import DONE, PENDING, Inbox, NewDelivery, make_engine
from bot.settings import Settings, SettingsError, load_settings
from bot.web import checkpoint_job
from tests.bot.test_bot_process import PEM
from tests.bot.test_inbox import new
from tests.fakes import SECRET, body_of, comment_payload, signed_headers
from tests.github_double import GitHubState, serve_github
from tests.serving import serve_in_thread


def settings_for(role: str, api_url: str, database: Path) -> Settings:
    return Settings(
        github_app_id=4242,
        github_private_key=PEM,
        webhook_secret=SECRET.decode(),
        github_api_url=api_url,
        database_url=f"sqlite:///{database}",
        runners_enabled=False,
        redeliver_interval_seconds=0,
        role=role,
        worker_poll_seconds=0.05,
    )


def wait_for(check: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(check())


def test_ingest_stores_and_a_worker_process_handles(tmp_path: Path) -> None:
    database = tmp_path / "orbit.db"
    state = GitHubState()
    body = body_of(comment_payload("/help", number=5))
    with (
        serve_github(state) as api_url,
        serve_in_thread(build_app(settings_for("ingest", api_url, database))) as ingest,
    ):
        answer = httpx.post(f"{ingest}/webhook", content=body, headers=signed_headers("issue_comment", body))
        assert (answer.status_code, answer.json()["message"]) == (202, "queued")
        inbox = Inbox(make_engine(f"sqlite:///{database}"))
        time.sleep(0.5)  # the ingest process has no workers: nothing takes the delivery
        assert inbox.counts() == {PENDING: 1}
        assert state.comments == []

        with serve_in_thread(build_app(settings_for("worker", api_url, database))) as worker:
            assert wait_for(lambda: inbox.counts() == {DONE: 1})
            assert [int(comment["number"]) for comment in state.comments] == [5]
            assert httpx.get(f"{worker}/readyz").status_code == 200
            refused = httpx.post(
                f"{worker}/webhook", content=body, headers=signed_headers("issue_comment", body)
            )
            assert refused.status_code == 404  # a worker process takes no deliveries
        inbox.engine.dispose()


JOB_QUEUED = {
    "action": "queued",
    "workflow_job": {"id": 9, "run_id": 10, "status": "queued", "labels": ["self-hosted", "orbit-gpu"]},
    "repository": {"full_name": "octo-org/model"},
    "installation": {"id": 1},
}
MERGED = {
    "action": "closed",
    "pull_request": {"number": 3, "merged": True},
    "repository": {"full_name": "octo-org/model"},
}


def test_an_ingest_process_holds_no_app_key_and_stores_what_the_workers_runners_and_deploys_handle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A separate ingest Deployment has no App key, no service-account token, no kubeconfig: it must
    # still store the runners' and the deploys' events, which only the workers' configuration turns on.
    for name in ("ORBIT_GITHUB_APP_ID", "ORBIT_GITHUB_PRIVATE_KEY", "ORBIT_GITHUB_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("ORBIT_WEBHOOK_SECRET", SECRET.decode())
    monkeypatch.setenv("ORBIT_DATABASE_URL", f"sqlite:///{tmp_path / 'orbit.db'}")
    monkeypatch.setenv("ORBIT_ROLE", "ingest")
    monkeypatch.setenv("ORBIT_REGISTRY", "registry.example")
    monkeypatch.setenv("ORBIT_PUBLIC_DOMAIN", "models.example")
    settings = load_settings()
    with serve_in_thread(build_app(settings)) as ingest:
        answers = {
            event: httpx.post(f"{ingest}/webhook", content=body, headers=signed_headers(event, body)).json()
            for event, body in (
                ("workflow_job", body_of(JOB_QUEUED)),
                ("pull_request", body_of(MERGED)),
                ("watch", body_of({"action": "started", "repository": {"full_name": "octo-org/model"}})),
            )
        }
        assert httpx.get(f"{ingest}/readyz").status_code == 200
        metrics = httpx.get(f"{ingest}/metrics").text
        assert 'orbit_deliveries_total{action="queued",event="workflow_job",outcome="queued"}' in metrics
    assert {event: answer["message"] for event, answer in answers.items()} == {
        "workflow_job": "queued",
        "pull_request": "queued",
        "watch": "no handler wants this event",
    }
    inbox = Inbox(make_engine(settings.database_url))
    assert inbox.counts() == {PENDING: 2}
    inbox.engine.dispose()


def test_every_feature_is_the_events_of_a_worker_with_runners_and_deploys() -> None:
    events = set(every_feature().routes)
    assert {("workflow_job", "queued"), ("workflow_job", "in_progress"), ("pull_request", "closed")} <= events
    assert ("workflow_run", "completed") in events
    (route,) = every_feature().handlers_for("workflow_job", "queued")
    with pytest.raises(RuntimeError, match="handles no deliveries"):
        asyncio.run(route(Delivery("workflow_job", "d-1", JOB_QUEUED), cast(Context, None)))


def test_a_worker_finishes_a_delivery_that_no_handler_of_its_own_wants(tmp_path: Path) -> None:
    # The ingest stored a job's event; this worker runs no runners: the delivery ends, it is not retried.
    database = tmp_path / "orbit.db"
    inbox = Inbox(make_engine(f"sqlite:///{database}"))
    inbox.create_schema()
    inbox.record(
        [NewDelivery(Delivery("workflow_job", "d-1", JOB_QUEUED), "octo-org/model", body_of(JOB_QUEUED))]
    )
    with (
        serve_github(GitHubState()) as api_url,
        serve_in_thread(build_app(settings_for("worker", api_url, database))),
    ):
        assert wait_for(lambda: inbox.counts() == {DONE: 1})
    inbox.engine.dispose()


def test_only_a_process_that_handles_deliveries_needs_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ORBIT_GITHUB_APP_ID", "ORBIT_GITHUB_PRIVATE_KEY", "ORBIT_GITHUB_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORBIT_WEBHOOK_SECRET", "s")
    monkeypatch.setenv("ORBIT_ROLE", "ingest")
    settings = load_settings()
    with pytest.raises(SettingsError, match="ORBIT_GITHUB_APP_ID is required"):
        settings.app_id()
    with pytest.raises(SettingsError, match="ORBIT_GITHUB_PRIVATE_KEY or ORBIT_GITHUB_PRIVATE_KEY_PATH"):
        settings.private_key()
    for role in ("worker", "all"):
        monkeypatch.setenv("ORBIT_ROLE", role)
        with pytest.raises(SettingsError) as caught:
            load_settings()
        message = str(caught.value)
        assert "\n" not in message
        assert (
            "ORBIT_GITHUB_APP_ID is required (in the cluster: key app-id of the Secret orbit-github-app)"
            in message
        )
        assert "key private-key.pem of the Secret orbit-github-app" in message


def test_the_role_is_one_of_three(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORBIT_GITHUB_APP_ID", "1")
    monkeypatch.setenv("ORBIT_GITHUB_PRIVATE_KEY", PEM)
    monkeypatch.setenv("ORBIT_WEBHOOK_SECRET", "s")
    monkeypatch.setenv("ORBIT_ROLE", "both")
    with pytest.raises(SettingsError, match="ORBIT_ROLE"):
        load_settings()
    monkeypatch.setenv("ORBIT_ROLE", "worker")
    assert load_settings().role == "worker"


async def test_the_log_copy_is_the_workers_work_and_an_ingest_alone_copies_seldom(tmp_path: Path) -> None:

    inbox = Inbox(make_engine(f"sqlite:///{tmp_path / 'orbit.db'}"))
    inbox.create_schema()
    inbox.record([new(delivery_id=f"d-{n}") for n in range(50)])
    database_bytes = (tmp_path / "orbit.db").stat().st_size  # the deliveries are in the log so far
    ingest_alone, with_workers = checkpoint_job(inbox, False), checkpoint_job(inbox, True)
    assert with_workers.every <= 0.2, "where workers run, the log is copied often, in small steps"
    assert ingest_alone.every >= 5, "an ingest process spends its core on acknowledgements"
    await ingest_alone.run()
    assert (tmp_path / "orbit.db").stat().st_size > database_bytes, (
        "it still copies, so the log stays bounded"
    )
    inbox.engine.dispose()


def test_an_ingest_database_role_on_sqlite_is_said_to_do_nothing(tmp_path: Path) -> None:
    settings = settings_for("worker", "http://127.0.0.1:9", tmp_path / "orbit.db")
    assert settings.warnings({}) == []
    with_role = settings.model_copy(update={"ingest_database_role": "orbit_ingest"})
    assert with_role.warnings({}) == [
        "ORBIT_INGEST_DATABASE_ROLE is set but the database is not PostgreSQL: it does nothing"
    ]

"""`orbit serve --role`: an ingest process only stores, a worker process only handles; together they work."""

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bot.app import build_app
from bot.inbox import DONE, PENDING, Inbox, make_engine
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

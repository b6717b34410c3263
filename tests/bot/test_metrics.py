"""The bot's metrics (and the model's scores): each moves after the event that moves it."""

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from bot.app import build_app
from bot.context import Context
from bot.errors import PermanentError, TemporaryError
from bot.events import IssueCommentEvent
from bot.inbox import DEAD, Inbox, deliveries, make_engine, work_items
from bot.metrics import (
    ATTEMPTS_EXHAUSTED,
    DEAD_LETTER_REASONS,
    LEASE_EXPIRED,
    PERMANENT_ERROR,
    UNREADABLE_PAYLOAD,
    observe_run,
)
from bot.router import Router
from bot.settings import Settings
from bot.worker import WorkerPool
from model.metrics import confusion_matrix, scores
from tests.bot.test_github_client import PEM
from tests.bot.test_inbox import fresh_inbox, new
from tests.fakes import FakeApp
from tests.postgres import postgres_url  # noqa: F401 - fixture


def test_scores_of_a_known_confusion() -> None:
    actual = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    matrix = confusion_matrix(actual, predicted, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    result = scores(matrix, ["a", "b", "c"])
    assert result["per_class"]["b"] == {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 2}
    assert result["recall"] == round((0.5 + 1.0 + 0.5) / 3, 4)


def test_a_class_never_predicted_scores_zero_not_nan() -> None:
    matrix = confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2)
    result = scores(matrix, ["a", "b"])
    assert result["per_class"]["b"]["precision"] == 0.0
    assert result["per_class"]["b"]["f1"] == 0.0


# The bot's own metrics: dead letters, the oldest pending item, run durations, and /metrics.
# Each test reads the default registry before and after the event, as a difference.


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def make_inbox(tmp_path: Path, max_attempts: int = 3) -> Inbox:
    tmp_path.mkdir(parents=True, exist_ok=True)
    inbox = Inbox(
        make_engine(f"sqlite:///{tmp_path / 'orbit.db'}"), lease_seconds=60, max_attempts=max_attempts
    )
    inbox.create_schema()
    return inbox


def set_items(inbox: Inbox, **values: object) -> None:
    with inbox.engine.begin() as connection:
        connection.execute(work_items.update().values(**values))


def dead_letters(reason: str) -> float:
    return sample("orbit_dead_letters_total", reason=reason)


async def run_handler(tmp_path: Path, error: Exception, attempts: int) -> dict[str, float]:
    """Fail one delivery's handler `attempts` times; return the dead letters counted meanwhile."""
    inbox, router = make_inbox(tmp_path), Router()

    @router.on(IssueCommentEvent)
    async def fail(_: IssueCommentEvent, __: Context) -> None:
        raise error

    workers = WorkerPool(inbox, router, FakeApp(), features={})
    inbox.record([new(delivery_id="d")])
    before = {reason: dead_letters(reason) for reason in DEAD_LETTER_REASONS}
    for _ in range(attempts):
        item = inbox.claim()
        assert item is not None
        await workers.handle(item)
        set_items(inbox, available_at=0)
    return {reason: dead_letters(reason) - before[reason] for reason in DEAD_LETTER_REASONS}


async def test_a_permanent_error_counts_one_dead_letter(tmp_path: Path) -> None:
    counted = await run_handler(tmp_path, PermanentError("GitHub answered 404"), attempts=1)
    assert counted == {LEASE_EXPIRED: 0, ATTEMPTS_EXHAUSTED: 0, PERMANENT_ERROR: 1, UNREADABLE_PAYLOAD: 0}


async def test_temporary_failures_count_a_dead_letter_only_at_the_last_attempt(tmp_path: Path) -> None:
    assert (await run_handler(tmp_path / "a", TemporaryError("502"), attempts=2))[ATTEMPTS_EXHAUSTED] == 0
    counted = await run_handler(tmp_path / "b", KeyError("head"), attempts=3)  # a handler bug, the same
    assert counted == {LEASE_EXPIRED: 0, ATTEMPTS_EXHAUSTED: 1, PERMANENT_ERROR: 0, UNREADABLE_PAYLOAD: 0}


def test_a_lease_that_expired_too_often_counts_a_dead_letter(tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path, max_attempts=2)
    inbox.record([new(delivery_id="hung")])
    before = dead_letters(LEASE_EXPIRED)
    for _ in range(2):  # a worker takes it and dies, twice
        assert inbox.claim() is not None
        set_items(inbox, lease_expires_at=0)
    assert dead_letters(LEASE_EXPIRED) - before == 0
    assert inbox.claim() is None  # the third claim gives up on it
    assert dead_letters(LEASE_EXPIRED) - before == 1
    assert inbox.counts() == {DEAD: 1}


def test_an_unreadable_payload_counts_a_dead_letter(tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    inbox.record([new(delivery_id="broken")])
    with inbox.engine.begin() as connection:
        connection.execute(deliveries.update().values(payload=b"not compressed"))
    before = dead_letters(UNREADABLE_PAYLOAD)
    assert inbox.claim() is None
    assert dead_letters(UNREADABLE_PAYLOAD) - before == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inbox]:
    yield from fresh_inbox(request, tmp_path)


def test_the_oldest_pending_item_is_timed_and_one_waiting_out_its_backoff_is_not(database: Inbox) -> None:
    inbox = database
    workers = WorkerPool(inbox, Router(), FakeApp(), features={})
    workers.refresh_depth()
    assert sample("orbit_inbox_oldest_pending_seconds") == 0
    inbox.record([new(1, "old"), new(2, "new")])
    with inbox.engine.begin() as connection:
        connection.execute(
            work_items.update()
            .where(work_items.c.delivery_id == "old")
            .values(available_at=time.time() - 120)
        )
    workers.refresh_depth()
    assert 120 <= sample("orbit_inbox_oldest_pending_seconds") < 130
    assert sample("orbit_inbox_depth", status="pending") == 2
    set_items(inbox, available_at=time.time() + 60)  # both wait out a retry's backoff
    workers.refresh_depth()
    assert sample("orbit_inbox_oldest_pending_seconds") == 0


def test_a_runs_duration_is_observed_by_githubs_clock_under_a_fixed_conclusion() -> None:
    def observed(conclusion: str) -> tuple[float, float]:
        labels = {"kind": "training", "conclusion": conclusion}
        return (
            sample("orbit_run_duration_seconds_count", **labels),
            sample("orbit_run_duration_seconds_sum", **labels),
        )

    success, other = observed("success"), observed("other")
    assert observe_run("training", "success", "2026-11-27T10:00:00Z", "2026-11-27T10:12:30Z") == 750
    assert observe_run("training", "timed_out", "2026-11-27T10:00:00Z", "2026-11-27T10:00:10Z") == 10
    assert observe_run("training", "success", None, "2026-11-27T10:00:10Z") is None
    assert observe_run("training", "success", "2026-11-27T10:00:10Z", "not a time") is None
    assert observed("success") == (success[0] + 1, success[1] + 750)
    assert observed("other") == (other[0] + 1, other[1] + 10)
    with pytest.raises(ValueError, match="unknown run kind"):
        observe_run("anything", "success", "2026-11-27T10:00:00Z", "2026-11-27T10:00:01Z")


OBSERVABILITY_METRICS = (
    "orbit_deliveries_total",
    "orbit_ack_latency_seconds",
    "orbit_inbox_depth",
    "orbit_work_attempts_total",
    "orbit_github_calls_total",
    "orbit_untrusted_runs_total",
    "orbit_inbox_oldest_pending_seconds",
    "orbit_dead_letters_total",
    "orbit_runner_pods",
    "orbit_runner_queue_seconds",
    "orbit_run_duration_seconds",
    "orbit_reports_published_total",
)


async def test_metrics_of_a_built_app_lists_every_metric(tmp_path: Path) -> None:
    settings = Settings(
        github_app_id=1,
        github_private_key=SecretStr(PEM.decode()),
        webhook_secret=SecretStr("secret"),
        database_url=f"sqlite:///{tmp_path / 'orbit.db'}",
        runners_enabled=False,
        redeliver_interval_seconds=0,
    )
    transport = httpx.ASGITransport(build_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://orbit") as client:
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    listed = set(re.findall(r"^# TYPE (\w+) ", answer.text, re.MULTILINE))
    assert set(OBSERVABILITY_METRICS) <= listed
    for series in (
        'orbit_dead_letters_total{reason="lease_expired"}',
        'orbit_reports_published_total{outcome="failed"}',
    ):
        assert f"\n{series} " in answer.text, "a counter of a fixed label set is there before it first moves"

"""Redelivery against the GitHub double: what failed and was never stored is asked for once, and handled once.

The double keeps the App's delivery attempts as GitHub does and, asked to redeliver one, posts its
exact bytes again to the App's webhook URL: here an `orbit` app served in a thread.
"""

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from bot import redelivery
from bot.app import build_app
from bot.github.hooks import AppHooksClient, DeliveryAttempt, app_hooks
from bot.inbox import DONE, Inbox, make_engine
from bot.processes import free_port
from bot.redelivery import Pass, Redeliverer, RedeliveryLog, failed_deliveries
from bot.settings import Settings
from tests.bot.test_bot_process import PEM
from tests.bot.test_inbox import fresh_inbox
from tests.fakes import SECRET, body_of, comment_payload, signed_headers
from tests.github_double import GitHubState, HookState, serve_github
from tests.postgres import postgres_url
from tests.serving import serve_in_thread

assert postgres_url  # a fixture, used by name


@dataclass
class GitHub:
    state: GitHubState
    url: str

    @property
    def hook(self) -> HookState:
        return self.state.hook

    def hooks(self) -> AppHooksClient:
        return app_hooks(4242, PEM, self.url)

    def replies_to(self, number: int) -> int:
        return sum(1 for comment in self.state.comments if int(comment["number"]) == number)


@dataclass
class Orbit:
    webhook: str
    inbox: Inbox


@pytest.fixture
def github() -> Iterator[GitHub]:
    state = GitHubState()
    state.hook.target = dead_url()
    with serve_github(state) as url:
        yield GitHub(state, url)


def dead_url() -> str:
    """Return a webhook URL where nothing listens: orbit is down."""
    return f"http://127.0.0.1:{free_port()}/webhook"


def settings_for(api_url: str, database: Path, redeliver_every: float = 0.0) -> Settings:
    return Settings(
        github_app_id=4242,
        github_private_key=PEM,
        webhook_secret=SECRET.decode(),
        github_api_url=api_url,
        database_url=f"sqlite:///{database}",
        runners_enabled=False,
        workers=4,
        redeliver_interval_seconds=redeliver_every,
    )


def serve_orbit(github: GitHub, database: Path, redeliver_every: float = 0.0) -> Iterator[Orbit]:
    with serve_in_thread(build_app(settings_for(github.url, database, redeliver_every))) as url:
        inbox = Inbox(make_engine(f"sqlite:///{database}"))
        yield Orbit(f"{url}/webhook", inbox)
        inbox.engine.dispose()


@pytest.fixture
def orbit(github: GitHub, tmp_path: Path) -> Iterator[Orbit]:
    """orbit, up, with no redelivery pass of its own: the tests run the passes."""
    yield from serve_orbit(github, tmp_path / "orbit.db")


def redeliverer_on(database: Path | str, github: GitHub, limit: int = 20, **log: Any) -> Redeliverer:
    url = database if isinstance(database, str) else f"sqlite:///{database}"
    inbox = Inbox(make_engine(url))
    inbox.create_schema()
    record = RedeliveryLog(inbox, **log)
    record.create_schema()
    return Redeliverer(github.hooks(), record, limit)


def help_comment(number: int) -> dict[str, Any]:
    return comment_payload("/help", number=number)


def counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("orbit_redeliveries_total", {"outcome": outcome}) or 0.0


async def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


def outcomes(hook: HookState, guid: str) -> list[tuple[bool, int]]:
    return [(attempt["redelivery"], attempt["status_code"]) for attempt in hook.attempts_of(guid)]


async def test_a_delivery_that_failed_while_orbit_was_down_is_redelivered_once_and_handled_once(
    github: GitHub, orbit: Orbit, tmp_path: Path
) -> None:
    lost = github.hook.send("issue_comment", help_comment(11))  # the target: nothing listens
    assert lost["status_code"] == 0
    github.hook.target = orbit.webhook  # orbit is back
    requested_before = counted("requested")
    redeliverer = redeliverer_on(tmp_path / "orbit.db", github)

    first = await redeliverer.run_once()
    assert first == Pass([lost["guid"]], [])
    await eventually(lambda: orbit.inbox.counts() == {DONE: 1} and github.replies_to(11) == 1)
    await eventually(lambda: len(github.hook.attempts_of(lost["guid"])) == 2)
    assert outcomes(github.hook, lost["guid"]) == [(False, 0), (True, 202)]  # the same guid, redelivered

    second = await redeliverer.run_once()
    assert second == Pass([], [])
    await asyncio.sleep(1.5)  # longer than a worker's poll: a second handling would show now
    assert github.replies_to(11) == 1
    assert github.hook.redelivery_requests == [lost["id"]]
    assert counted("requested") - requested_before == 1


async def test_what_succeeded_or_was_stored_is_not_asked_for(
    github: GitHub, orbit: Orbit, tmp_path: Path
) -> None:
    github.hook.target = orbit.webhook
    answered = github.hook.send("issue_comment", help_comment(12))
    assert answered["status_code"] == 202
    # Stored by orbit, but its answer came too late for GitHub, which recorded a failure.
    slow_guid, payload = str(uuid.uuid4()), help_comment(13)
    body = body_of(payload)
    stored = httpx.post(orbit.webhook, content=body, headers=signed_headers("issue_comment", body, slow_guid))
    assert stored.status_code == 202
    github.hook.record("issue_comment", payload, 0, "timed out", guid=slow_guid)

    assert await redeliverer_on(tmp_path / "orbit.db", github).run_once() == Pass([], [])
    assert github.hook.redelivery_requests == []


async def test_the_limit_bounds_a_pass_and_nothing_is_asked_twice(github: GitHub, tmp_path: Path) -> None:
    failed = [github.hook.record("issue_comment", help_comment(n), 503) for n in range(5)]
    guids = [attempt["guid"] for attempt in failed]
    redeliverer = redeliverer_on(tmp_path / "orbit.db", github, limit=2)

    passes = [await redeliverer.run_once() for _ in range(4)]
    assert [p.requested for p in passes] == [guids[:2], guids[2:4], guids[4:], []]  # oldest first
    # Each redelivery failed too (orbit is still down): asked for once all the same.
    await eventually(lambda: sum(a["redelivery"] for a in github.hook.attempts) == 5)
    assert await redeliverer.run_once() == Pass([], [])
    assert sorted(github.hook.redelivery_requests) == [attempt["id"] for attempt in failed]


async def test_a_github_error_on_one_delivery_does_not_stop_the_others(
    github: GitHub, tmp_path: Path
) -> None:
    first, busy, refused, last = (github.hook.record("issue_comment", help_comment(n), 500) for n in range(4))
    github.hook.fail_redelivery = {busy["id"]: 502, refused["id"]: 422}
    redeliverer = redeliverer_on(tmp_path / "orbit.db", github)
    failed_before = counted("failed")

    assert await redeliverer.run_once() == Pass(
        [first["guid"], last["guid"]], [busy["guid"], refused["guid"]]
    )
    assert counted("failed") - failed_before == 2

    github.hook.fail_redelivery = {}
    # GitHub was busy (502): asked for again; it refused (422): that one counts as asked.
    assert await redeliverer.run_once() == Pass([busy["guid"]], [])


async def test_a_redelivery_that_never_arrived_is_asked_for_once_more_after_an_hour(
    github: GitHub, tmp_path: Path
) -> None:
    lost = github.hook.record("issue_comment", help_comment(5), 0)
    now = [time.time()]
    redeliverer = redeliverer_on(tmp_path / "orbit.db", github, clock=lambda: now[0])

    asked = []
    for minutes in (0, 30, 61, 120, 240):
        now[0] += minutes * 60
        asked.append((await redeliverer.run_once()).requested)
    assert asked == [[lost["guid"]], [], [lost["guid"]], [], []]  # once more after an hour, then never


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty inbox database, SQLite or the test PostgreSQL, without the redelivery table."""
    for inbox in fresh_inbox(request, tmp_path):
        redelivery.metadata.drop_all(inbox.engine)
        yield str(inbox.engine.url.render_as_string(hide_password=False))


async def test_two_replicas_ask_for_each_delivery_once(github: GitHub, database: str) -> None:
    failed = [github.hook.record("issue_comment", help_comment(n), 502) for n in range(30)]
    replicas = [redeliverer_on(database, github, limit=100) for _ in range(2)]

    passes = await asyncio.gather(*(replica.run_once() for replica in replicas))
    asked = [guid for done in passes for guid in done.requested]
    assert sorted(asked) == sorted(attempt["guid"] for attempt in failed)  # each once, by one of them
    assert sorted(github.hook.redelivery_requests) == [attempt["id"] for attempt in failed]
    again = await asyncio.gather(*(replica.run_once() for replica in replicas))
    assert again == [Pass([], []), Pass([], [])]


async def test_orbit_redelivers_on_its_own_after_a_restart(github: GitHub, tmp_path: Path) -> None:
    lost = github.hook.send("issue_comment", help_comment(21))  # sent while orbit was down
    for up in serve_orbit(github, tmp_path / "orbit.db", redeliver_every=0.2):  # at start-up, then often
        github.hook.target = up.webhook
        await eventually(lambda: github.replies_to(21) == 1)
        await asyncio.sleep(1.5)  # several more passes
    assert github.replies_to(21) == 1
    assert github.hook.redelivery_requests == [lost["id"]]


async def test_the_listing_follows_the_cursor_and_stops_at_the_window_or_the_page_bound(
    github: GitHub,
) -> None:
    attempts = [github.hook.record("ping", {"zen": str(n)}, 200, "OK") for n in range(250)]
    for old in attempts[:30]:
        old["delivered_at"] = "2020-01-01T00:00:00Z"
    hooks = github.hooks()
    day_ago = datetime.now(UTC) - timedelta(days=1)

    listed = await hooks.recent_deliveries(day_ago)
    assert [a.id for a in listed] == [a["id"] for a in reversed(attempts[30:])]  # three pages, newest first
    assert len(await hooks.recent_deliveries(day_ago, max_pages=2)) == 200
    assert len(await hooks.recent_deliveries(datetime.min.replace(tzinfo=UTC))) == 250


def attempt(guid: str, attempt_id: int, code: int, status: str = "") -> DeliveryAttempt:
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=attempt_id)
    ok = status or ("OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}")
    return DeliveryAttempt(attempt_id, guid, when, ok, code, "issue_comment", "created", attempt_id > 10)


def test_a_delivery_failed_only_if_every_attempt_failed() -> None:
    attempts = [
        attempt("down-then-up", 1, 0, "failed to connect to host"),
        attempt("down-then-up", 11, 202),
        attempt("twice-down", 2, 503),
        attempt("twice-down", 12, 0, "timed out"),
        attempt("refused", 3, 401),
        attempt("accepted", 4, 202),
        attempt("odd", 5, 200, "Invalid HTTP Response: 200"),  # a status that is not OK is a failure
    ]
    failed = failed_deliveries(attempts)
    # The latest attempt of each, in the order the deliveries were first sent.
    assert [(a.guid, a.id) for a in failed] == [("twice-down", 12), ("refused", 3), ("odd", 5)]


def test_replicas_starting_at_once_create_the_table_once(database: str) -> None:
    logs = [RedeliveryLog(Inbox(make_engine(database))) for _ in range(4)]
    start = threading.Barrier(len(logs))

    def create(log: RedeliveryLog) -> None:
        start.wait()
        log.create_schema()

    with ThreadPoolExecutor(len(logs)) as pool:
        list(pool.map(create, logs))  # none raises
    assert logs[0].to_ask(["a"]) == {"a"}

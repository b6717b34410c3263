"""`orbit dev` against the GitHub double and a local receiver: each new delivery arrives once, signed.

The forwarder lists the App's deliveries as GitHub keeps them, and posts those that are new since it
started to the local webhook URL; old ones stay where they are unless `--since` asks for them.
"""

import hmac
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.delivery import signature_of
from bot.forwarding import Forwarder, parse_since
from bot.github.hooks import app_hooks
from bot.processes import free_port
from tests.bot.test_bot_process import ORBIT, PEM, bot_env
from tests.fakes import SECRET, comment_payload
from tests.github_double import GitHubState, HookState, serve_github
from tests.serving import serve_in_thread


@dataclass
class Receiver:
    """The local `orbit serve` stand-in: records what it is sent, answers 202."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def webhook(request: Request) -> PlainTextResponse:
            self.received.append((dict(request.headers), await request.body()))
            return PlainTextResponse("queued", status_code=202)

        return Starlette(routes=[Route("/webhook", webhook, methods=["POST"])])

    def guids(self) -> list[str]:
        return [headers["x-github-delivery"] for headers, _ in self.received]


@pytest.fixture
def github() -> Iterator[tuple[HookState, str]]:
    state = GitHubState()
    # The App's secret on GitHub is not the local one: a signature passed on as GitHub made it fails.
    state.hook.secret = b"the production webhook secret"
    with serve_github(state) as url:
        yield state.hook, url


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    local = Receiver()
    with serve_in_thread(local.app()) as url:
        yield local, f"{url}/webhook"


def comment(number: int) -> dict[str, Any]:
    return comment_payload("/help", number=number)


def assert_forwarded_as_github_sent(local: Receiver, hook: HookState, attempts: list[dict[str, Any]]) -> None:
    """Each attempt arrived once, in order, with its event, its guid, its payload and a valid signature."""
    assert local.guids() == [attempt["guid"] for attempt in attempts]
    for (headers, body), attempt in zip(local.received, attempts, strict=True):
        assert hmac.compare_digest(headers["x-hub-signature-256"], signature_of(SECRET, body))
        assert headers["x-github-event"] == attempt["event"]
        assert headers["content-type"] == "application/json"
        assert orjson.loads(body) == attempt["request"]["payload"]


async def test_new_deliveries_arrive_once_signed_and_old_ones_do_not(
    github: tuple[HookState, str], receiver: tuple[Receiver, str]
) -> None:
    hook, api_url = github
    local, url = receiver
    old = [hook.record("issue_comment", comment(n), 0) for n in (1, 2)]
    async with httpx.AsyncClient() as client:
        forwarder = Forwarder(app_hooks(4242, PEM, api_url), url, SECRET, client, since=None)
        await forwarder.start()
        new = [
            hook.record("issue_comment", comment(3), 0),
            hook.record("pull_request", {"action": "opened"}, 202, "OK"),
        ]
        first = await forwarder.poll()
        newer = [hook.record("issue_comment", comment(4), 503)]
        second = await forwarder.poll()
        third = await forwarder.poll()
    assert [(f.attempt.guid, f.status) for f in first] == [(a["guid"], 202) for a in new]
    assert [f.attempt.guid for f in second] == [newer[0]["guid"]]
    assert third == []
    assert_forwarded_as_github_sent(local, hook, [*new, *newer])
    assert not set(local.guids()) & {attempt["guid"] for attempt in old}


async def test_since_forwards_the_earlier_deliveries_too(
    github: tuple[HookState, str], receiver: tuple[Receiver, str]
) -> None:
    hook, api_url = github
    local, url = receiver
    old = [hook.record("issue_comment", comment(n), 0) for n in (1, 2)]
    old[0]["delivered_at"] = "2020-01-01T00:00:00Z"  # before the window asked for
    async with httpx.AsyncClient() as client:
        since = datetime.now(UTC) - timedelta(minutes=15)
        forwarder = Forwarder(app_hooks(4242, PEM, api_url), url, SECRET, client, since=since)
        await forwarder.start()
        await forwarder.poll()
    assert_forwarded_as_github_sent(local, hook, old[1:])


async def test_a_local_server_that_is_down_gets_the_delivery_at_the_next_poll(
    github: tuple[HookState, str],
) -> None:
    hook, api_url = github
    local, port = Receiver(), free_port()
    async with httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{port}/webhook"
        forwarder = Forwarder(app_hooks(4242, PEM, api_url), url, SECRET, client, since=None)
        await forwarder.start()
        sent = [hook.record("issue_comment", comment(5), 0)]
        assert await forwarder.poll() == []  # nothing listens yet
        with serve_in_thread(local.app(), port):
            assert len(await forwarder.poll()) == 1
            assert await forwarder.poll() == []
    assert_forwarded_as_github_sent(local, hook, sent)


def test_since_reads_a_duration_or_a_time() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_since("15m", now) == datetime(2026, 5, 1, 11, 45, tzinfo=UTC)
    assert parse_since("2h", now) == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert parse_since("2026-04-30T08:00:00Z", now) == datetime(2026, 4, 30, 8, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday", now)


@pytest.mark.slow
def test_orbit_dev_forwards_new_deliveries_until_ctrl_c(
    github: tuple[HookState, str], receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    hook, api_url = github
    local, url = receiver
    old = hook.record("issue_comment", comment(1), 0)
    log = tmp_path / "dev.log"
    with log.open("wb") as output:
        dev = subprocess.Popen(
            [ORBIT, "dev", "--forward", url, "--every", "0.2"],
            env=bot_env(api_url, tmp_path / "unused.db"),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while "forwarding the App's deliveries after" not in log.read_text():
            assert dev.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        new = [hook.record("issue_comment", comment(n), 0) for n in (2, 3)]
        while len(local.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # five more polls: nothing is forwarded twice
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=10) == 0, log.read_text()
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
    assert_forwarded_as_github_sent(local, hook, new)
    assert old["guid"] not in local.guids()
    output_text = log.read_text()
    assert all(
        f"forwarded {attempt['guid']} (issue_comment.created): 202 queued" in output_text for attempt in new
    )
    assert output_text.rstrip().endswith("stopped")

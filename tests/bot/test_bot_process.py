"""`orbit serve` as a real process: start-up errors, and a SIGKILL in the middle of the work loses nothing."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.inbox import DONE, Inbox, make_engine
from bot.processes import free_port
from tests.fakes import SECRET, body_of, comment_payload, signed_headers
from tests.github_double import GitHubState, serve_github

pytestmark = pytest.mark.slow
ORBIT = str(Path(sys.executable).parent / "orbit")
PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    .decode()
)


def bot_env(api_url: str, database: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ORBIT_GITHUB_APP_ID": "4242",
        "ORBIT_GITHUB_PRIVATE_KEY": PEM,
        "ORBIT_WEBHOOK_SECRET": SECRET.decode(),
        "ORBIT_GITHUB_API_URL": api_url,
        "ORBIT_DATABASE_URL": f"sqlite:///{database}",
        "ORBIT_LEASE_SECONDS": "2",
        "ORBIT_WORKERS": "4",
        "ORBIT_RUNNERS_ENABLED": "false",  # this test is about the inbox, not a cluster
    }


class BotProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [ORBIT, "serve", "--host", "127.0.0.1", "--port", str(self.port)], env=env
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("orbit serve did not become ready")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


@pytest.fixture
def github() -> Iterator[tuple[GitHubState, str]]:
    state = GitHubState(delay=0.25)
    with serve_github(state) as url:
        yield state, url


def test_a_missing_setting_stops_start_up_with_its_name(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in bot_env("http://127.0.0.1:1", tmp_path / "x.db").items()
        if k != "ORBIT_WEBHOOK_SECRET"
    }
    result = subprocess.run(
        [ORBIT, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "ORBIT_WEBHOOK_SECRET is required" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "BEGIN PRIVATE KEY" not in result.stderr + result.stdout


def test_sigkill_in_the_middle_loses_nothing(tmp_path: Path, github: tuple[GitHubState, str]) -> None:
    state, api_url = github
    database = tmp_path / "orbit.db"
    env = bot_env(api_url, database)
    bot = BotProcess(env)
    pulls = range(1, 31)
    for number in pulls:
        body = body_of(comment_payload("/help", number=number))
        response = httpx.post(
            f"{bot.url}/webhook", content=body, headers=signed_headers("issue_comment", body)
        )
        assert response.status_code == 202
    while len(state.comments) < 5:
        time.sleep(0.05)
    bot.kill()
    answered_before_kill = len(state.comments)
    assert answered_before_kill < 30

    inbox = Inbox(make_engine(f"sqlite:///{database}"))
    assert sum(inbox.counts().values()) == 30  # every acknowledged delivery survived the kill

    restarted = BotProcess(env)
    try:
        deadline = time.monotonic() + 60
        while inbox.counts() != {DONE: 30} and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        restarted.stop()
    assert inbox.counts() == {DONE: 30}
    assert {int(c["number"]) for c in state.comments} == set(pulls)
    assert len(state.comments) == 30, "a reply posted just before the kill is not posted again after it"


def test_orbit_serve_role_ingest_starts_without_the_app_and_a_worker_process_handles(
    tmp_path: Path, github: tuple[GitHubState, str]
) -> None:
    # The `ha` overlay's two Deployments, as processes: the ingest gets no App id, no key, no cluster.
    state, api_url = github
    database = tmp_path / "orbit.db"
    ingest_env = {
        key: value
        for key, value in bot_env(api_url, database).items()
        if key not in ("ORBIT_GITHUB_APP_ID", "ORBIT_GITHUB_PRIVATE_KEY", "KUBECONFIG")
    }
    ingest = BotProcess({**ingest_env, "ORBIT_ROLE": "ingest", "KUBECONFIG": str(tmp_path / "none")})
    worker = None
    try:
        body = body_of(comment_payload("/help", number=3))
        answer = httpx.post(
            f"{ingest.url}/webhook", content=body, headers=signed_headers("issue_comment", body)
        )
        assert (answer.status_code, answer.json()["message"]) == (202, "queued")
        worker = BotProcess(
            {**bot_env(api_url, database), "ORBIT_ROLE": "worker", "ORBIT_WORKER_POLL_SECONDS": "0.05"}
        )
        deadline = time.monotonic() + 30
        while not state.comments and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [int(comment["number"]) for comment in state.comments] == [3]
    finally:
        ingest.stop()
        if worker is not None:
            worker.stop()

"""`orbit serve --workers 2` as real processes: two uvicorn workers share the inbox and the work.

Every delivery of a burst is acknowledged and answered exactly once, whichever process received it
and whichever claimed it; a delivery sent again is recognised across the processes.
"""

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.inbox import DONE, Inbox, make_engine
from bot.processes import free_port
from tests.bot.test_bot_process import ORBIT, bot_env
from tests.fakes import body_of, comment_payload, signed_headers
from tests.github_double import GitHubState, make_app
from tests.serving import serve_in_thread

pytestmark = pytest.mark.slow
WORKERS = 2
BURST = range(1, 61)  # one pull request each: nothing orders them, so both processes take part
STARTED = "Application startup complete."


def parent_of(pid: int) -> int | None:
    """Return the parent process id from /proc/<pid>/stat, or None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name, in parentheses, may hold spaces


def alive(pid: int) -> bool:
    """Return whether the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children_of(pid: int) -> list[int]:
    return sorted(
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and parent_of(int(entry.name)) == pid
    )


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def socket_owner(client_port: int, server_port: int, candidates: list[int]) -> int | None:
    """Return which of `candidates` holds the localhost TCP connection from `client_port` to `server_port`."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        if (local, remote) == (client_port, server_port):
            inode = fields[9]
    if inode is None:
        return None
    for pid in candidates:
        with os.scandir(f"/proc/{pid}/fd") as descriptors:
            for descriptor in descriptors:
                try:
                    if os.readlink(descriptor.path) == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue  # closed meanwhile
    return None


class CallerLog:
    """ASGI middleware in front of the GitHub double: which `orbit serve` process posted each comment."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.workers: list[int] = []
        self.comment_callers: list[int | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith("/comments"):
            client_port, server_port = scope["client"][1], scope["server"][1]
            self.comment_callers.append(socket_owner(client_port, server_port, self.workers))
        await self.app(scope, receive, send)


class Serve:
    """`orbit serve --workers N` in its own session, so that it and every process it starts can be stopped."""

    def __init__(self, env: dict[str, str], workers: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [ORBIT, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_started(self, workers: int, timeout: float = 60) -> None:
        """Wait until it answers, then until `workers` processes finished start-up (their workers run).

        Fewer processes than asked is left to the tests to report, after a grace period.
        """
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None:
                raise AssertionError(f"orbit serve exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"orbit serve did not become ready in {timeout} s:\n{self.output()}")
            time.sleep(0.1)
        grace = time.monotonic() + 20
        while self.output().count(STARTED) < workers and time.monotonic() < grace:
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def workers(self) -> list[int]:
        """The uvicorn workers: the master's children that multiprocessing started, not its tracker."""
        return [
            pid
            for pid in children_of(self.process.pid)
            if "spawn_main" in command_line(pid) and "resource_tracker" not in command_line(pid)
        ]

    def stop(self) -> None:
        """Stop the master (it stops its workers), then anything of its session that is left."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):  # the session this test started, and only it
            os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class Served:
    bot: Serve
    github: GitHubState
    callers: CallerLog
    inbox: Inbox
    workers: list[int]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("serve-workers")
    database = folder / "orbit.db"
    github = GitHubState(delay=0.25)  # a handler takes a while: neither process can drain a burst alone
    callers = CallerLog(make_app(github))
    with serve_in_thread(callers) as api_url:
        # A lease far longer than any handler: a second handling here can only be a claim taken twice.
        env = {**bot_env(api_url, database), "ORBIT_LEASE_SECONDS": "120"}
        bot = Serve(env, WORKERS, folder / "serve.log")
        try:
            bot.wait_started(WORKERS)
            callers.workers = bot.workers()
            inbox = Inbox(make_engine(f"sqlite:///{database}"))
            yield Served(bot, github, callers, inbox, list(callers.workers))
            inbox.engine.dispose()
        finally:
            bot.stop()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in callers.workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in callers.workers if alive(pid)], "a worker process outlived orbit serve"


def post(client: httpx.Client, url: str, number: int, delivery_id: str) -> httpx.Response:
    body = body_of(comment_payload("/help", number=number))
    return client.post(
        f"{url}/webhook", content=body, headers=signed_headers("issue_comment", body, delivery_id)
    )


def wait_until_done(served: Served, items: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while served.inbox.counts() != {DONE: items} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served.inbox.counts() == {DONE: items}, served.bot.output()[-3000:]
    time.sleep(1.5)  # longer than a worker's poll: a second handling would show now


def comments_on(served: Served, numbers: range | list[int]) -> Counter[int]:
    wanted = set(numbers)
    return Counter(n for c in served.github.comments if (n := int(c["number"])) in wanted)


def test_serve_runs_one_process_per_worker(served: Served) -> None:
    master = served.bot.process.pid
    assert len(served.workers) == WORKERS, (children_of(master), served.bot.output()[-3000:])
    assert all(parent_of(pid) == master for pid in served.workers)
    assert master not in served.workers
    assert served.bot.output().count(STARTED) == WORKERS  # each process started its own app and workers


def test_a_burst_is_acknowledged_and_answered_once_each(served: Served) -> None:
    ids = {number: f"burst-{number}-{uuid.uuid4()}" for number in BURST}
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda n: post(client, served.bot.url, n, ids[n]), BURST))
    assert [(r.status_code, r.json()["message"]) for r in responses] == [(202, "queued")] * len(BURST)

    wait_until_done(served, len(BURST))
    assert comments_on(served, BURST) == dict.fromkeys(BURST, 1)  # none lost, none answered twice
    reactions = Counter((int(r["comment"]), r["content"]) for r in served.github.reactions)
    assert all(reactions[(1000 + n, "eyes")] == reactions[(1000 + n, "rocket")] == 1 for n in BURST)
    assert {item["attempts"] for item in served.inbox.list_items(limit=1000)} == {1}  # each claimed once
    callers = Counter(served.callers.comment_callers)
    assert set(callers) == set(served.workers), callers  # both processes handled part of the burst
    assert served.workers == served.bot.workers()  # and neither was restarted meanwhile


def test_a_delivery_sent_again_is_handled_once(served: Served) -> None:
    before = sum(served.inbox.counts().values())
    with httpx.Client(timeout=30) as client:
        first = post(client, served.bot.url, 100, "redelivered")
        again = post(client, served.bot.url, 100, "redelivered")
        with ThreadPoolExecutor(10) as pool:  # ten copies at once, to whichever process accepts each
            copies = list(pool.map(lambda _: post(client, served.bot.url, 101, "at-once"), range(10)))
    assert (first.status_code, first.json()["message"]) == (202, "queued")
    assert (again.status_code, again.json()["message"]) == (202, "already received")
    assert all(r.status_code == 202 for r in copies)
    assert Counter(r.json()["message"] for r in copies) == {"queued": 1, "already received": 9}

    wait_until_done(served, before + 2)
    assert comments_on(served, [100, 101]) == {100: 1, 101: 1}

"""Benchmark webhook ingest against Probot: signed ~29 KB pull_request deliveries on localhost, one core.

Each server runs pinned to one core; the load (wrk, and the Python pacer) runs on another. Probot
and orbit take turns, twice, so that a machine busy with other work slows both alike.
1. Acknowledgement latency of a freshly started server at a fixed 200 deliveries/s for 10 s (p50,
   p99), paced from Python.
2. Throughput at concurrency 32, driven by wrk (unique delivery ids from a Lua counter): 3 s to warm
   up, then 10 s. Orbit stores every delivery durably (SQLite, WAL) before its 202; Probot (npm's
   `probot`, a handler that only acknowledges, see bench/ingest_probot.py) stores nothing.
3. The same latency while workers drain a backlog of 25,000: ingest and workers as two processes
   (`orbit serve --role ingest` and `--role worker`) on cores of their own, as separate Deployments
   would be (the worker shares the load's core, which can only slow the measured acks); the same two
   on one core, the worker at a lower CPU priority; and one process (`--role all`). Only the
   deliveries sent before the backlog ran out count (a thread polls it every 0.1 s).
Goals: throughput >= 1.2x Probot's; p99 <= 0.5x Probot's, quiet and while draining.
"""

import asyncio
import contextlib
import gzip
import json
import os
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.harness import exchange, percentile, webhook_request
from bench.ingest_probot import start_probot
from bot.delivery import Delivery, signature_of
from bot.inbox import PENDING, WAITING, Inbox, NewDelivery, make_engine
from bot.processes import LocalServer, start_uvicorn, stop

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"benchmark secret"
TARGET_BYTES = 29 * 1024
BACKLOG = 25_000
ROUNDS = 2
CPUS = sorted(os.sched_getaffinity(0))
SERVER_CPU, LOAD_CPU = CPUS[-1], CPUS[0]  # the same one when there is one core


def payload() -> bytes:
    """Return a real `pull_request` delivery's body, padded to ~29 KB with a long description."""
    examples = json.loads(gzip.decompress((ROOT / "tests/fixtures/webhook-examples.json.gz").read_bytes()))
    base = next(
        e["payload"]
        for e in examples
        if e["event"] == "pull_request" and e["payload"]["action"] == "synchronize"
    )
    body = json.dumps(base).encode()
    base["pull_request"]["body"] = "Retrain with a larger learning rate. " * (
        (TARGET_BYTES - len(body)) // 37
    )
    return json.dumps(base).encode()


@contextlib.contextmanager
def pinned(cpu: int) -> Iterator[None]:
    """Run the block on `cpu` only: processes started in it inherit the affinity."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def start_orbit(database: Path, role: str, cpu: int = SERVER_CPU) -> LocalServer:
    """Start the bot's app (bench/ingest_server.py) in `role`, on `cpu` (the server core)."""
    env = {
        **os.environ,
        "ORBIT_DATABASE_URL": f"sqlite:///{database}",
        "ORBIT_WEBHOOK_SECRET": SECRET.decode(),
        "ORBIT_BENCH_ROLE": role,
    }
    options = ["--factory", "--no-access-log", "--loop", "uvloop", "--http", "httptools"]
    with pinned(cpu):
        return start_uvicorn("bench.ingest_server:app", ROOT, "/healthz", env, options, timeout=30)


def wrk_script(folder: Path, body: bytes) -> Path:
    """Write wrk's Lua script: each request a fresh delivery id, the same signed body."""
    (folder / "body.json").write_bytes(body)
    script = folder / "deliveries.lua"
    script.write_text(f"""
local file = io.open("{folder / "body.json"}", "rb")
local body = file:read("*a")
file:close()
local counter = 0
local prefix = tostring(math.random(1, 1e9))
request = function()
  counter = counter + 1
  return wrk.format("POST", "/webhook", {{
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "pull_request",
    ["X-GitHub-Delivery"] = prefix .. "-" .. counter,
    ["X-Hub-Signature-256"] = "{signature_of(SECRET, body)}",
  }}, body)
end
""")
    return script


def throughput(url: str, script: Path, seconds: int = 10) -> tuple[float, str]:
    """Return wrk's requests per second at concurrency 32, and its error lines."""
    result = subprocess.run(
        ["taskset", "-c", str(LOAD_CPU), "wrk", "-t1", "-c32", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    rate = next(float(line.split()[1]) for line in lines if line.startswith("Requests/sec"))
    errors = [line.strip() for line in lines if "Non-2xx" in line or "Socket errors" in line]
    return rate, "; ".join(errors)


def fresh_deliveries(host: str, body: bytes) -> Callable[[], bytes]:
    """Return a maker of signed requests for `body`, each with a fresh delivery id."""
    headers = {
        "content-type": "application/json",
        "x-github-event": "pull_request",
        "x-hub-signature-256": signature_of(SECRET, body),
    }
    return lambda: webhook_request(host, (body, {**headers, "x-github-delivery": str(uuid.uuid4())}))


async def paced_latency(
    url: str, body: bytes, ok: bytes, rate: int = 200, seconds: int = 10
) -> list[tuple[float, float]]:
    """Send `rate` deliveries a second on keep-alive connections; return (when sent, latency) of each.

    Times are `time.monotonic()`, which other processes' clocks share.
    """
    host, port = url.removeprefix("http://").split(":")
    make = fresh_deliveries(url.removeprefix("http://"), body)
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(16):
        idle.put_nowait(await asyncio.open_connection(host, int(port)))
    latencies: list[tuple[float, float]] = []

    async def one() -> None:
        connection = await idle.get()
        sent = time.monotonic()
        latencies.append((sent, await exchange(*connection, make(), ok)))
        idle.put_nowait(connection)

    tasks = []
    began = time.perf_counter()
    for index in range(rate * seconds):
        await asyncio.sleep(max(0.0, began + index / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    while not idle.empty():
        idle.get_nowait()[1].close()
    return latencies


def latency(
    url: str, body: bytes, ok: bytes, until: Callable[[], float] | None = None
) -> tuple[float, float, int]:
    """Return p50 and p99 (ms) of the acknowledgement at 200/s, paced from the load core, and their count.

    `until`: only the deliveries sent before the time it answers (after the run) count.
    """
    with pinned(LOAD_CPU):
        found = asyncio.run(paced_latency(url, body, ok))
    end = until() if until else float("inf")
    kept = sorted(took for sent, took in found if sent < end)
    return percentile(kept, 0.5) * 1000, percentile(kept, 0.99) * 1000, len(kept)


@dataclass(frozen=True)
class Run:
    """What one server did under load."""

    rate: float
    errors: str
    p50: float
    p99: float


def load(server: LocalServer, body: bytes, folder: Path, ok: bytes) -> Run:
    """Measure a fresh server's latency at 200/s, then warm it up and measure its throughput.

    Latency first: right after a burst of tens of thousands the bot is still copying its write-ahead
    log into the database, which is what a burst costs, not what a steady 200/s does.
    """
    p50, p99, _ = latency(server.url, body, ok)
    script = wrk_script(folder, body)
    throughput(f"{server.url}/webhook", script, seconds=3)
    rate, errors = throughput(f"{server.url}/webhook", script)
    return Run(rate, errors, p50, p99)


def fill(database: Path, body: bytes, count: int) -> None:
    """Record `count` pending deliveries of `body` over 1,000 pull requests, as a burst leaves them."""
    inbox = Inbox(make_engine(f"sqlite:///{database}"))
    inbox.create_schema()
    parsed = json.loads(body)
    for start in range(0, count, 1_000):
        inbox.record(
            [
                NewDelivery(Delivery("pull_request", f"backlog-{i}", parsed), f"octo/repo#{i % 1_000}", body)
                for i in range(start, min(count, start + 1_000))
            ]
        )
    inbox.engine.dispose()


def unfinished(database: Path) -> int:
    """Return how many items are still pending or waiting."""
    inbox = Inbox(make_engine(f"sqlite:///{database}"))
    counts = inbox.counts()
    inbox.engine.dispose()
    return counts.get(PENDING, 0) + counts.get(WAITING, 0)


class BacklogWatch:
    """Polls the backlog from a thread and keeps when it first ran out (`time.monotonic()`).

    One indexed lookup every 0.1 s on a connection of its own: the watch must not slow the pacer
    whose process it shares.
    """

    LEFT = f"SELECT 1 FROM work_items WHERE status IN ('{PENDING}', '{WAITING}') LIMIT 1"

    def __init__(self, database: Path) -> None:
        self.database = database
        self.emptied_at = float("inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        connection = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30)
        try:
            while not self._stop.wait(0.1):
                if connection.execute(self.LEFT).fetchone() is None:
                    self.emptied_at = time.monotonic()
                    return
        finally:
            connection.close()

    def stop(self) -> float:
        """Stop polling; return when the backlog ran out (infinity: it never did)."""
        self._stop.set()
        self._thread.join()
        return self.emptied_at


def draining(body: bytes, roles: tuple[tuple[str, int], ...]) -> tuple[float, float, int, int]:
    """Return the ack p50, p99 at 200/s while a backlog is drained, how many acks that is, and the drain.

    `roles`: each process's role and core. The acknowledging one starts first, so that the workers
    start draining just before the acknowledgements are sent. Only deliveries sent before the backlog
    ran out count: the goal is the acknowledgement while the workers drain, not after.
    """
    with tempfile.TemporaryDirectory() as scratch:
        database = Path(scratch) / "orbit.db"
        fill(database, body, BACKLOG)
        ordered = sorted(roles, key=lambda role_and_cpu: role_and_cpu[0] == "worker")
        servers = [start_orbit(database, role, cpu) for role, cpu in ordered]
        try:
            began = unfinished(database)
            watch = BacklogWatch(database)
            p50, p99, measured = latency(servers[0].url, body, b"HTTP/1.1 202", watch.stop)
            left = unfinished(database)
        finally:
            for server in servers:
                stop(server.process)
    return p50, p99, measured, began + 2_000 - left  # 2,000 sent during the measurement


def quiet(body: bytes) -> tuple[Run, Run, int]:
    """Return Probot's run, orbit's (ingest only) and how many deliveries orbit stored."""
    with tempfile.TemporaryDirectory() as scratch:
        probot = start_probot(SECRET, str(SERVER_CPU))
        try:
            base = load(probot, body, Path(scratch), b"HTTP/1.1 200")
        finally:
            stop(probot.process)
        orbit = start_orbit(Path(scratch) / "orbit.db", "ingest")
        try:
            ours = load(orbit, body, Path(scratch), b"HTTP/1.1 202")
        finally:
            stop(orbit.process)
        stored = sum(Inbox(make_engine(f"sqlite:///{Path(scratch) / 'orbit.db'}")).counts().values())
    return base, ours, stored


DRAINING = (
    (
        "on a core of their own, as separate Deployments (--role worker on the load's core)",
        (("worker", LOAD_CPU), ("ingest", SERVER_CPU)),
    ),
    ("on the same core (--role worker + --role ingest)", (("worker", SERVER_CPU), ("ingest", SERVER_CPU))),
    ("on the same core (--role all)", (("all", SERVER_CPU),)),
)


def main() -> None:
    """Print orbit's and Probot's figures, measured now, and their ratios."""
    body = payload()
    print(f"payload {len(body):,} bytes; {len(CPUS)} cores: servers on core {SERVER_CPU}, load on {LOAD_CPU}")
    verdict = {True: "met", False: "NOT met"}
    probot_p99 = []
    for round_number in range(1, ROUNDS + 1):  # the servers take turns: a busy machine slows both alike
        base, ours, stored = quiet(body)
        probot_p99.append(base.p99)
        print(f"round {round_number}:")
        for name, run in (
            ("Probot (stores nothing)", base),
            (f"orbit ingest (durable, {stored:,} stored)", ours),
        ):
            print(f"  {name}: {run.rate:,.0f}/s at c=32 {run.errors}")
            print(f"    at 200/s: p50 {run.p50:.2f} ms, p99 {run.p99:.2f} ms")
        met = verdict[ours.rate >= 1.2 * base.rate]
        print(f"  throughput {ours.rate / base.rate:.2f}x Probot's (goal >= 1.2x: {met})")
        print(
            f"  p99 {ours.p99 / base.p99:.2f}x Probot's (goal <= 0.5x: {verdict[ours.p99 <= 0.5 * base.p99]})"
        )
    base_p99 = sorted(probot_p99)[0]  # the lower of Probot's: the harder baseline
    for name, roles in DRAINING:
        p50, p99, measured, drained = draining(body, roles)
        print(f"while workers drain {BACKLOG:,} {name} ({drained:,} drained in 10 s):")
        print(f"  {measured:,} acknowledgements sent before the backlog ran out")
        print(
            f"  ack at 200/s p50 {p50:.2f} ms, p99 {p99:.2f} ms: {p99 / base_p99:.2f}x Probot's p99"
            f" (goal <= 0.5x: {verdict[p99 <= 0.5 * base_p99]})"
        )


if __name__ == "__main__":
    main()

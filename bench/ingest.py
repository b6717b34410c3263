"""Benchmark webhook ingest: signed ~29 KB pull_request deliveries against a running server on localhost.

For one uvicorn process (the default) and for two (`orbit serve --workers 2`, one per core here):
1. Throughput at concurrency 32, driven by wrk (unique delivery ids from a Lua counter): the first
   5 s after start-up (cold), then 10 s.
2. Acknowledgement latency at a fixed 200 deliveries/s for 10 s (p50, p99), paced from Python.
Every delivery is stored durably (SQLite, WAL) before its 202. Goals: >= 2,500/s and p99 < 10 ms.
"""

import asyncio
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.harness import exchange, percentile, webhook_request
from bot.delivery import signature_of
from bot.inbox import Inbox, make_engine
from bot.processes import LocalServer, start_uvicorn, stop

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"benchmark secret"
TARGET_BYTES = 29 * 1024


def payload() -> bytes:
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


def start_server(database: Path, processes: int) -> LocalServer:
    env = {
        **os.environ,
        "ORBIT_DATABASE_URL": f"sqlite:///{database}",
        "ORBIT_WEBHOOK_SECRET": SECRET.decode(),
    }
    options = ["--factory", "--no-access-log", "--loop", "uvloop", "--http", "httptools"]
    options += ["--workers", str(processes)]
    return start_uvicorn("bench.ingest_server:app", ROOT, "/healthz", env, options, timeout=30)


def wrk_script(folder: Path, body: bytes) -> Path:
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
    result = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), f"{url}/webhook"],
        capture_output=True,
        text=True,
        check=True,
    )
    rate = next(
        float(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("Requests/sec")
    )
    errors = [
        line.strip() for line in result.stdout.splitlines() if "Non-2xx" in line or "Socket errors" in line
    ]
    return rate, "; ".join(errors)


def fresh_deliveries(host: str, body: bytes) -> Callable[[], bytes]:
    """Return a maker of signed requests for `body`, each with a fresh delivery id."""
    headers = {
        "content-type": "application/json",
        "x-github-event": "pull_request",
        "x-hub-signature-256": signature_of(SECRET, body),
    }
    return lambda: webhook_request(host, (body, {**headers, "x-github-delivery": str(uuid.uuid4())}))


async def paced_latency(url: str, body: bytes, rate: int = 200, seconds: int = 10) -> list[float]:
    """Send `rate` deliveries a second on keep-alive connections; return each acknowledgement latency."""
    host, port = url.removeprefix("http://").split(":")
    make = fresh_deliveries(url.removeprefix("http://"), body)
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(16):
        idle.put_nowait(await asyncio.open_connection(host, int(port)))
    latencies: list[float] = []

    async def one() -> None:
        connection = await idle.get()
        latencies.append(await exchange(*connection, make()))
        idle.put_nowait(connection)

    tasks = []
    began = time.perf_counter()
    for index in range(rate * seconds):
        await asyncio.sleep(max(0.0, began + index / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    while not idle.empty():
        idle.get_nowait()[1].close()
    return sorted(latencies)


@dataclass(frozen=True)
class Run:
    """What one server configuration did."""

    processes: int
    cold: float
    rate: float
    errors: str
    latencies: list[float]
    stored: int


def measure(body: bytes, processes: int) -> Run:
    """Start a server with an empty database, load it, stop it; count what it stored."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        server = start_server(folder / "orbit.db", processes)
        try:
            script = wrk_script(folder, body)
            cold, _ = throughput(server.url, script, seconds=5)
            rate, errors = throughput(server.url, script)
            latencies = asyncio.run(paced_latency(server.url, body))
        finally:
            stop(server.process)
        stored = sum(Inbox(make_engine(f"sqlite:///{folder / 'orbit.db'}")).counts().values())
    return Run(processes, cold, rate, errors, latencies, stored)


def main() -> None:
    body = payload()
    print(f"payload {len(body)} bytes")
    verdict = {True: "met", False: "NOT met"}
    reference = "a Node.js App framework that stores nothing, ~2,400/s here"
    for processes in (1, 2):
        run = measure(body, processes)
        p50, p99 = percentile(run.latencies, 0.5) * 1000, percentile(run.latencies, 0.99) * 1000
        print(f"uvicorn processes: {processes}; deliveries stored durably: {run.stored}")
        rates = f"first 5 s {run.cold:,.0f}/s, then {run.rate:,.0f}/s"
        print(f"  throughput at concurrency 32: {rates} {run.errors}")
        print(f"  acknowledgement latency at 200/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        print(f"  goals: >= 2,500/s {verdict[run.rate >= 2500]}; p99 < 10 ms {verdict[p99 < 10]}")
        print(f"  ratio to the reference ({reference}): {run.rate / 2400:.2f}x")
    sys.exit(0)


if __name__ == "__main__":
    main()

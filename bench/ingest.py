"""Benchmark webhook ingest: signed ~29 KB pull_request deliveries against a running server on localhost.

1. Throughput at concurrency 32 for 10 s, driven by wrk (unique delivery ids from a Lua counter).
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
from pathlib import Path

from bot.delivery import signature_of
from bot.inbox import Inbox, make_engine
from model.local import LocalServer, start_uvicorn, stop

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


def start_server(database: Path) -> LocalServer:
    env = {
        **os.environ,
        "ORBIT_DATABASE_URL": f"sqlite:///{database}",
        "ORBIT_WEBHOOK_SECRET": SECRET.decode(),
    }
    options = ["--factory", "--no-access-log", "--loop", "uvloop", "--http", "httptools"]
    options += ["--workers", os.environ.get("ORBIT_BENCH_PROCESSES", "1")]
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


def throughput(url: str, script: Path) -> tuple[float, str]:
    result = subprocess.run(
        ["wrk", "-t1", "-c32", "-d10s", "--latency", "-s", str(script), f"{url}/webhook"],
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


def raw_request(url: str, body: bytes) -> Callable[[], bytes]:
    """Return a maker of complete HTTP/1.1 requests with fresh delivery ids (cheap: no client library)."""
    host = url.removeprefix("http://")
    head = (
        f"POST /webhook HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"X-GitHub-Event: pull_request\r\nX-Hub-Signature-256: {signature_of(SECRET, body)}\r\n"
        f"Content-Length: {len(body)}\r\n"
    ).encode()
    return lambda: head + f"X-GitHub-Delivery: {uuid.uuid4()}\r\n\r\n".encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> float:
    started = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    await reader.readexactly(length)
    elapsed = time.perf_counter() - started
    if not head.startswith(b"HTTP/1.1 202"):
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    return elapsed


async def paced_latency(url: str, body: bytes, rate: int = 200, seconds: int = 10) -> list[float]:
    """Send `rate` deliveries a second on keep-alive connections; return each acknowledgement latency."""
    host, port = url.removeprefix("http://").split(":")
    make = raw_request(url, body)
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(16):
        idle.put_nowait(await asyncio.open_connection(host, int(port)))
    latencies: list[float] = []

    async def one() -> None:
        connection = await idle.get()
        latencies.append(await _exchange(*connection, make()))
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


def main() -> None:
    body = payload()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        server = start_server(folder / "orbit.db")
        try:
            rate, errors = throughput(server.url, wrk_script(folder, body))
            latencies = asyncio.run(paced_latency(server.url, body))
        finally:
            stop(server.process)
        stored = sum(Inbox(make_engine(f"sqlite:///{folder / 'orbit.db'}")).counts().values())
    p50, p99 = latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"payload {len(body)} bytes; deliveries stored durably: {stored}")
    print(f"throughput at concurrency 32: {rate:,.0f} deliveries/s {errors}")
    print(f"acknowledgement latency at 200/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    verdict = {True: "met", False: "NOT met"}
    print(f"goals: >= 2,500/s {verdict[rate >= 2500]}; p99 < 10 ms {verdict[p99 < 10]}")
    reference = "a Node.js App framework that stores nothing, ~2,400/s here"
    print(f"ratio to the reference ({reference}): {rate / 2400:.2f}x")
    sys.exit(0)


if __name__ == "__main__":
    main()

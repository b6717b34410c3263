"""No growth over time: 100,000 signed ~29 KB deliveries through one bot (an ingest and a worker process).

Each delivery is for one of 1,000 pull requests. The bot (bench/ingest_server.py, `--role ingest`
and `--role worker`, as `orbit serve` runs them apart, on one SQLite file) runs on one core with a
retention of a few seconds, so that the retention pass has handled deliveries to delete while ingest
goes on; the worker drains at its lower priority, between rounds and beside them, and the retention
pass rests between its batches so that the ingest goes first: under this flood it falls behind, and
the benchmark prints how long, after the last round, the worker took to drain what was left and to
delete everything handled more than the retention ago. The load comes
from the other core: 32 keep-alive connections, 10 rounds of 10,000 deliveries. After each round:
the round's ingest rate, each process's RSS and what the inbox holds. With both roles in one process
(`--role all`, `--all`) the workers draining the backlog take the core from the ingest: the rounds
after the first, which start with a backlog, are slower for that. Goals: the rate of every round within
10 % of the first's, RSS after the warm-up round within 10 % of its level then. The baseline is the
first round, measured in the same run.
"""

import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.harness import exchange, webhook_request
from bench.ingest import LOAD_CPU, SECRET, payload, pinned, start_orbit
from bot.delivery import signature_of
from bot.inbox import Inbox, make_engine
from bot.processes import stop

ROUNDS, PER_ROUND, CONNECTIONS, PULLS = 10, 10_000, 32, 1_000
RETENTION_SECONDS = 5.0


def rss_mib(pid: int) -> float:
    """Return the resident set size of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def send_round(url: str, requests: list[bytes]) -> float:
    """Send the requests over `CONNECTIONS` keep-alive connections at once; return deliveries a second."""
    host, port = url.removeprefix("http://").split(":")
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(CONNECTIONS)]
    queue = iter(requests)

    async def sender(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for request in queue:
            await exchange(reader, writer, request)

    began = time.perf_counter()
    await asyncio.gather(*(sender(*connection) for connection in connections))
    elapsed = time.perf_counter() - began
    for _, writer in connections:
        writer.close()
    return len(requests) / elapsed


def caught_up(database: Path, timeout: float = 300.0) -> tuple[float, int]:
    """Wait until nothing is left to run nor anything handled past the retention; return (seconds, done left).

    A pass runs every second: "past the retention" allows for it and one batch's rest.
    """
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    began = time.monotonic()
    try:
        while time.monotonic() - began < timeout:
            now = time.time()
            unfinished, overdue, done = connection.execute(
                "SELECT sum(status IN ('pending', 'waiting', 'running')),"
                " sum(status = 'done' AND available_at < ?), sum(status = 'done') FROM work_items",
                (now - RETENTION_SECONDS - 2,),
            ).fetchone()
            if not unfinished and not overdue:
                return time.monotonic() - began, done or 0
            time.sleep(0.5)
    finally:
        connection.close()
    raise RuntimeError(f"the worker did not catch up within {timeout:.0f} s")


def requests_of(host: str, body: bytes, first: int) -> list[bytes]:
    """Return a round's requests over `PULLS` pull requests, each signed, made before the round starts."""
    payload = json.loads(body)
    requests = []
    for index in range(first, first + PER_ROUND):
        payload["number"] = payload["pull_request"]["number"] = index % PULLS
        signed = json.dumps(payload).encode()
        headers = {
            "content-type": "application/json",
            "x-github-event": "pull_request",
            "x-github-delivery": str(uuid.uuid4()),
            "x-hub-signature-256": signature_of(SECRET, signed),
        }
        requests.append(webhook_request(host, (signed, headers)))
    return requests


def main() -> None:
    """Print each round's rate and the bot's RSS, with their ratios to the first round."""
    body = payload()
    os.environ["ORBIT_BENCH_RETENTION_SECONDS"] = str(RETENTION_SECONDS)
    print(f"soak: {ROUNDS} x {PER_ROUND:,} deliveries of {len(body):,} bytes, c={CONNECTIONS}, one core")
    with tempfile.TemporaryDirectory() as scratch:
        database = Path(scratch) / "orbit.db"
        roles = ("all",) if "--all" in sys.argv else ("worker", "ingest")
        servers = [start_orbit(database, role) for role in roles]
        server = servers[-1]
        inbox = Inbox(make_engine(f"sqlite:///{database}"))
        try:
            time.sleep(1)
            idle = rss_mib(server.process.pid)
            print(f"  {' + '.join(roles)}: idle RSS {idle:.0f} MiB (the ingest's)", end="")
            print(f", worker {rss_mib(servers[0].process.pid):.0f} MiB" if len(servers) > 1 else "")
            rates, sizes = [], []
            host = server.url.removeprefix("http://")
            for number in range(ROUNDS):
                requests = requests_of(host, body, number * PER_ROUND)
                with pinned(LOAD_CPU):
                    rates.append(asyncio.run(send_round(server.url, requests)))
                sizes.append(sum(rss_mib(each.process.pid) for each in servers))
                counts = inbox.counts()
                print(
                    f"  round {number + 1:>2}: {rates[-1]:7,.0f}/s ({rates[-1] / rates[0]:.2f}x round 1),"
                    f" RSS {sizes[-1]:.0f} MiB, inbox {dict(sorted(counts.items()))}"
                )
            seconds, left = caught_up(database)
            print(
                f"  after the last round: backlog drained and every delivery handled over"
                f" {RETENTION_SECONDS:.0f} s ago deleted within {seconds:.1f} s ({left:,} handled since kept)"
            )
        finally:
            for each in servers:
                stop(each.process)
            inbox.engine.dispose()
    after_warmup = sizes[1:]
    growth = max(after_warmup) / min(after_warmup)
    slowest = min(rates) / rates[0]
    median = sorted(rates)[len(rates) // 2] / rates[0]
    print(
        f"  RSS under load {min(after_warmup):.0f}-{max(after_warmup):.0f} MiB after warm-up:"
        f" {growth:.2f}x (goal <= 1.10x: {'met' if growth <= 1.10 else 'NOT met'})"
    )
    print(
        f"  slowest round {slowest:.2f}x round 1 (goal >= 0.90x: {'met' if slowest >= 0.90 else 'NOT met'});"
        f" median round {median:.2f}x"
    )


if __name__ == "__main__":
    main()

"""What the bot benchmarks share: the real bot in a thread, doubles in their own processes."""

import asyncio
import functools
import threading
import time
from pathlib import Path

import httpx
import orjson
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.context import Feature
from bot.delivery import signature_of
from bot.github import GitHubAppClient
from bot.inbox import Inbox, make_engine
from bot.ingest import Ingest
from bot.processes import LocalServer, free_port, start_uvicorn
from bot.router import Router
from bot.runs import TRAIN, RecordedRun, record
from bot.web import create_app
from bot.worker import WorkerPool

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"benchmark"


def bot_server(
    database: Path, github_url: str, router: Router, features: dict[str, Feature] | None = None
) -> uvicorn.Server:
    """Return the bot (ingest, SQLite inbox, workers, githubkit client) as a uvicorn server, not started."""
    inbox = Inbox(make_engine(f"sqlite:///{database}"))
    inbox.create_schema()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    github = GitHubAppClient(1, key.decode(), github_url)
    workers = WorkerPool(inbox, router, github, features=features or {}, concurrency=16, poll_seconds=0.5)
    ingest = Ingest(inbox, router, SECRET, workers.wake)
    config = uvicorn.Config(
        create_app(inbox, ingest, workers), host="127.0.0.1", port=free_port(), log_level="warning"
    )
    return uvicorn.Server(config)


def start_in_thread(server: uvicorn.Server) -> threading.Thread:
    """Run the server in a daemon thread; return once it listens."""
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return thread


def serve_double(factory: str, probe: str, env: dict[str, str] | None = None) -> LocalServer:
    """Run a double in its own process, so that it does not share the bot's interpreter."""
    return start_uvicorn(factory, ROOT, probe, env=env, options=["--factory"], timeout=30)


Delivery = tuple[bytes, dict[str, str]]


def signed(event: str, payload: dict[str, object], delivery_id: str) -> Delivery:
    """Return a delivery's body and headers, signed with the benchmark's secret."""
    body = orjson.dumps(payload)
    headers = {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery_id,
        "x-hub-signature-256": signature_of(SECRET, body),
    }
    return body, headers


def help_comment(number: int) -> Delivery:
    """Return a `/help` comment delivery: the baseline of the bot-side latency benchmarks."""
    return signed(
        "issue_comment",
        {
            "action": "created",
            "issue": {"number": number, "pull_request": {"url": "https://api.github.com/x"}},
            "comment": {"id": 10_000 + number, "body": "/help", "user": {"login": "octocat", "type": "User"}},
            "repository": {"full_name": "octo-org/model"},
            "installation": {"id": 1},
        },
        f"help-{number}",
    )


async def send_one_by_one(url: str, deliveries: list[Delivery], gap: float) -> list[float]:
    """Post each delivery to the bot, `gap` seconds apart; return when each was sent."""
    sent = []
    async with httpx.AsyncClient(base_url=url) as http:
        for body, headers in deliveries:
            sent.append(time.monotonic())
            response = await http.post("/webhook", content=body, headers=headers)
            assert response.status_code == 202, response.text
            await asyncio.sleep(gap)
    return sent


def arrivals(github: httpx.Client, what: str, count: int, timeout: float = 120) -> list[float]:
    """Wait until the GitHub double has seen `count` requests named `what`; return when each came."""
    deadline = time.monotonic() + timeout
    seen: list[float] = []
    while time.monotonic() < deadline:
        seen = [at for at, _, name in github.get("/_report_requests").json() if name == what]
        if len(seen) >= count:
            return seen
        time.sleep(0.2)
    raise RuntimeError(f"{what}: only {len(seen)} of {count} arrived")


def webhook_request(host: str, delivery: Delivery) -> bytes:
    """Return a delivery as a complete HTTP/1.1 request: a sender this cheap leaves the CPU to the bot."""
    body, headers = delivery
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (
        f"POST /webhook HTTP/1.1\r\nHost: {host}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    )


async def exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    ok: bytes = b"HTTP/1.1 202",
) -> float:
    """Send one request on a keep-alive connection; return how long the answer took. Only `ok` is right."""
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
    if not head.startswith(ok):
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    return elapsed


async def send_burst(url: str, deliveries: list[Delivery]) -> list[float]:
    """Post deliveries at once, one connection each; return when each was sent (monotonic clock)."""
    host, port = url.removeprefix("http://").split(":")
    connections = [await asyncio.open_connection(host, int(port)) for _ in deliveries]
    sent = [0.0] * len(deliveries)

    async def one(index: int) -> None:
        request = webhook_request(host, deliveries[index])
        sent[index] = time.monotonic()
        await exchange(*connections[index], request)

    await asyncio.gather(*(one(index) for index in range(len(deliveries))))
    for _, writer in connections:
        writer.close()
    return sent


def percentile(values: list[float], share: float) -> float:
    """Return the value below which `share` of the values lie (nearest rank)."""
    return sorted(values)[max(int(len(values) * share) - 1, 0)]


DISPATCHED_HEAD = "d" * 40  # the default branch's commit the benchmarks' runs run


def record_runs(database: Path, runs: list[RecordedRun]) -> None:
    """Record runs in the bot's database as dispatching them would: only such runs' events count."""
    inbox = Inbox(make_engine(f"sqlite:///{database}"))
    inbox.create_schema()
    for run in runs:
        inbox.write(functools.partial(record, run=run))
    inbox.engine.dispose()


def recorded_run(run_id: int, purpose: str, title: str, repository: str = "octo-org/model") -> RecordedRun:
    """Return the record of a run orbit dispatched from the default branch."""
    workflow = "train.yml" if purpose == TRAIN else "deploy.yml"
    return RecordedRun(run_id, repository, purpose, workflow, f"bench:{run_id}", title, DISPATCHED_HEAD)


def dispatched(purpose: str, repository: str = "octo-org/model") -> dict[str, object]:
    """Return the fields a workflow_run payload carries for a run orbit dispatched."""
    workflow = "train.yml" if purpose == TRAIN else "deploy.yml"
    return {
        "path": f".github/workflows/{workflow}",
        "event": "workflow_dispatch",
        "head_sha": DISPATCHED_HEAD,
        "head_repository": {"full_name": repository},
    }

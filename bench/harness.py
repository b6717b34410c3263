"""What the bot benchmarks share: the real bot in a thread, doubles in their own processes."""

import threading
import time
from pathlib import Path

import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.app import create_app
from bot.context import Feature
from bot.github import GitHubAppClient
from bot.inbox import Inbox, make_engine
from bot.ingest import Ingest
from bot.router import Router
from bot.worker import WorkerPool
from model.local import LocalServer, free_port, start_uvicorn

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

"""The ingest benchmarks' baseline: a Probot app (npm's `probot`) whose handler only acknowledges.

It gets the same payload, the same signature and the same load as the bot. Probot verifies the
signature, parses the body and answers once its (empty) handler has run; it stores nothing. The app
and its `node_modules` are made under `bench/results/probot` (ignored by git) on first use.
"""

import os
import shutil
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.processes import LocalServer, free_port, stop, wait_ready

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "bench" / "results" / "probot"
PROBOT_VERSION = "14.3.2"
PACKAGE = f"""{{
  "name": "orbit-bench-probot",
  "private": true,
  "type": "module",
  "dependencies": {{"probot": "{PROBOT_VERSION}"}}
}}
"""
# What `probot run` does (a Server with the App's Probot), without a .env, logging only warnings.
APP = """
import { Probot, Server } from "probot";
import pino from "pino";

const server = new Server({
  log: pino({ level: "warn", name: "probot" }),  // Probot's default logs every request at info
  host: "127.0.0.1",
  port: Number(process.env.PORT),
  webhookPath: "/webhook",
  Probot: Probot.defaults({
    appId: 1,
    privateKey: process.env.PRIVATE_KEY,
    secret: process.env.WEBHOOK_SECRET,
    logLevel: "warn",
  }),
});
await server.load((app) => {
  app.on("pull_request", async () => {});
});
await server.start();
"""


def install() -> Path:
    """Write the app and install Probot (once); return the app's folder."""
    FOLDER.mkdir(parents=True, exist_ok=True)
    (FOLDER / "app.js").write_text(APP)
    package = FOLDER / "package.json"
    if not package.exists() or package.read_text() != PACKAGE:
        package.write_text(PACKAGE)
        shutil.rmtree(FOLDER / "node_modules", ignore_errors=True)
    if not (FOLDER / "node_modules" / "probot").is_dir():
        if shutil.which("npm") is None:
            raise RuntimeError("the Probot baseline needs Node.js and npm (`make system-deps`)")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=FOLDER, check=True)
    return FOLDER


def start_probot(secret: bytes, cpus: str | None = None) -> LocalServer:
    """Start the Probot app on a free port (pinned to `cpus` when given); return once it answers."""
    folder = install()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "PRIVATE_KEY": key.decode(),
        "WEBHOOK_SECRET": secret.decode(),
        "NODE_ENV": "production",
        "LOG_LEVEL": "warn",
    }
    command = ["node", "app.js"]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    process = subprocess.Popen(command, cwd=folder, env=env, start_new_session=True)
    server = LocalServer(f"http://127.0.0.1:{port}", process)
    try:
        wait_ready(server, timeout=30, path="/ping")
    except Exception:
        stop(process)
        raise
    return server

"""Run tools and local servers as child processes: a step that fails stops with its name."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

READY_TIMEOUT_S = 180.0


class LocalRunError(RuntimeError):
    """A step of a local run failed; the message says which and why."""


def tool_environment() -> dict[str, str]:
    """Return the environment with this Python's scripts first on PATH (dvc stages run `python`)."""
    scripts = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}


def run_step(title: str, command: list[str], cwd: Path) -> None:
    """Run one command, streaming its output, and stop with its name if it fails."""
    print(f"\n==> {title}: {' '.join(command)}", flush=True)
    result = subprocess.run(command, cwd=cwd, env=tool_environment(), check=False)
    if result.returncode != 0:
        raise LocalRunError(f"'{' '.join(command)}' failed with exit code {result.returncode}")


def tool(name: str) -> str:
    """Return the path of a console script installed beside this Python."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def free_port() -> int:
    """Return a TCP port on localhost that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class LocalServer:
    """A `bentoml serve` process answering on localhost."""

    url: str
    process: subprocess.Popen[bytes]


def wait_ready(server: LocalServer, timeout: float = READY_TIMEOUT_S, path: str = "/readyz") -> None:
    """Wait until `path` answers 200, or fail if the server exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise LocalRunError(f"the server exited with code {server.process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}{path}", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise LocalRunError(f"the server was not ready after {timeout:.0f} s")


def start_uvicorn(
    app: str,
    cwd: Path,
    probe: str,
    env: dict[str, str] | None = None,
    options: Sequence[str] = (),
    timeout: float = READY_TIMEOUT_S,
) -> LocalServer:
    """Start `uvicorn APP` on a free localhost port in its own session; wait until `probe` answers 200."""
    port = free_port()
    command = [
        tool("uvicorn"),
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *options,
    ]
    process = subprocess.Popen(command, cwd=cwd, env=env or tool_environment(), start_new_session=True)
    server = LocalServer(f"http://127.0.0.1:{port}", process)
    try:
        wait_ready(server, timeout, probe)
    except LocalRunError:
        stop(process)
        raise
    return server


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server and every worker it started."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

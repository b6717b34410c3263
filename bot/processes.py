"""Run tools and local servers as child processes: a step that fails stops with its name."""

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

READY_TIMEOUT_S = 180.0
DVC_STAGE = re.compile(r"^Running stage '(?P<stage>[^']+)':")  # how `dvc repro` starts each stage


class LocalRunError(RuntimeError):
    """A step of a local run failed; the message says which and why."""


def tool_environment() -> dict[str, str]:
    """Return the environment with this Python's scripts first on PATH (dvc stages run `python`)."""
    scripts = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}


def duration(seconds: float) -> str:
    """Return a duration as people read it: 0.4 s, 52 s, 3 min 5 s."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def shown(command: Sequence[str]) -> str:
    """Return a command as a person would type it: the tool's name, not its full path."""
    return shlex.join([Path(command[0]).name, *command[1:]])


@contextlib.contextmanager
def timed(name: str) -> Iterator[None]:
    """Print, when the block ends, how long `name` took, or after how long it failed."""
    started = time.monotonic()
    try:
        yield
    except BaseException:
        print(f"==> {name}: failed after {duration(time.monotonic() - started)}", flush=True)
        raise
    print(f"==> {name}: done in {duration(time.monotonic() - started)}", flush=True)


def run_step(title: str, command: list[str], cwd: Path) -> None:
    """Run one command, streaming its output; print its time; stop with its name if it fails."""
    print(f"\n==> {title} ({shown(command)})", flush=True)
    with timed(title):
        result = subprocess.run(command, cwd=cwd, env=tool_environment(), check=False)
        if result.returncode != 0:
            raise LocalRunError(f"'{shown(command)}' failed with exit code {result.returncode}")


@dataclass(frozen=True)
class Finished:
    """What a streamed command printed, how it ended and how long it ran."""

    output: str
    returncode: int
    seconds: float


class StageClock:
    """Print each stage of a `dvc repro` as it starts and its time when it ends."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.started = 0.0

    def see(self, line: str) -> None:
        """Note a line of the command's output: the start of a stage ends the one before."""
        match = DVC_STAGE.match(line)
        if match:
            self.end("done in")
            self.stage, self.started = match["stage"], time.monotonic()
            print(f"==> {self.stage}: started", flush=True)

    def end(self, how: str) -> None:
        """Print the time of the running stage, if one is: `done in` or `failed after`."""
        if self.stage is not None:
            print(f"==> {self.stage}: {how} {duration(time.monotonic() - self.started)}", flush=True)
        self.stage = None


def stream_stages(name: str, command: list[str], cwd: Path) -> Finished:
    """Run a command, echoing its output as it comes; print the time of each DVC stage and of `name`."""
    started, clock, lines = time.monotonic(), StageClock(), []
    env = {**tool_environment(), "PYTHONUNBUFFERED": "1"}  # the stages' output as it comes
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                clock.see(line)
                sys.stdout.write(line)
                sys.stdout.flush()
                lines.append(line)
        except BaseException:
            process.terminate()  # interrupted: DVC stops its stage and releases its lock
            raise
    finished = Finished("".join(lines), process.returncode, time.monotonic() - started)
    how = "done in" if finished.returncode == 0 else "failed after"
    clock.end(how)
    print(f"==> {name}: {how} {duration(finished.seconds)}", flush=True)
    return finished


def tool(name: str) -> str:
    """Return the path of a console script installed beside this Python."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


@contextlib.contextmanager
def interrupted_by_sigterm() -> Iterator[None]:
    """Take SIGTERM as Ctrl-C in the block, so that what it started is stopped on the way out."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_port(port: int) -> None:
    """Fail at once, naming `--port`, if the port is out of range or something listens on it."""
    if not 0 < port < 65536:
        raise LocalRunError(f"--port {port} is not a TCP port: pass one from 1 to 65535")
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is free
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise LocalRunError(
                f"--port {port} is taken ({error.strerror}): stop what listens there or pass another --port"
            ) from None


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


WORKER_NICENESS = 10


def lower_priority() -> None:
    """Lower this process's CPU priority (a worker process), so that ingest on the same core goes first.

    The kernel then gives a waking ingest process the CPU at once, and the workers what it leaves:
    the acknowledgement does not wait for a burst being drained.
    """
    os.nice(WORKER_NICENESS)
    # With autogroups (most distributions' kernels) nice weighs only against the processes of the same
    # session; a process that leads its own session lowers its session's group as well.
    if os.getsid(0) == os.getpid():
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text(str(WORKER_NICENESS))

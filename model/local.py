"""Run the model project on this machine: the pipeline, the Bento, a local server."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from model import MODEL_NAME

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


@contextlib.contextmanager
def serving(
    target: str, cwd: Path, port: int | None = None, log: Path | None = None
) -> Iterator[LocalServer]:
    """Serve a Bento (tag or directory) on localhost for the block; its output goes to `log` if given."""
    port = port or free_port()
    command = [tool("bentoml"), "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    output = log.open("wb") if log else None
    process = subprocess.Popen(
        command, cwd=cwd, env=tool_environment(), start_new_session=True, stdout=output, stderr=output
    )
    server = LocalServer(f"http://127.0.0.1:{port}", process)
    try:
        wait_ready(server)
        yield server
    finally:
        stop(process)
        if output:
            output.close()


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


def held_out_samples(project: Path, per_class: int = 1) -> list[tuple[Path, str]]:
    """Return validation images (never seen in training) with their true class."""
    description = json.loads((project / "data/prepared/dataset.json").read_text())
    with np.load(project / "data/prepared/val.npz") as archive:
        files, labels = [str(f) for f in archive["files"]], archive["labels"]
    samples: list[tuple[Path, str]] = []
    for label, name in enumerate(description["classes"]):
        picks = [f for f, lab in zip(files, labels, strict=True) if lab == label][:per_class]
        samples += [(project / "data/raw" / f, name) for f in picks]
    return samples


def predict_file(url: str, path: Path) -> dict[str, object]:
    """Send one image to `/predict` and return the answer."""
    with path.open("rb") as handle:
        response = httpx.post(f"{url}/predict", files={"image": (path.name, handle, "image/png")}, timeout=30)
    response.raise_for_status()
    answer: dict[str, object] = response.json()
    return answer


def print_predictions(url: str, samples: list[tuple[Path, str]]) -> int:
    """Print each prediction next to the true class; return how many were right."""
    print(f"\n{'image':<28} {'true':<9} {'predicted':<9} {'p':>6}")
    right = 0
    for path, truth in samples:
        answer = predict_file(url, path)
        guess = str(answer["prediction"])
        probabilities = answer["probabilities"]
        assert isinstance(probabilities, dict)
        right += guess == truth
        mark = "ok" if guess == truth else "WRONG"
        print(f"{path.name:<28} {truth:<9} {guess:<9} {probabilities[guess]:>6.1%}  {mark}")
    print(f"{right}/{len(samples)} held-out images classified correctly")
    return right


def print_metrics(project: Path) -> None:
    """Print the headline validation metrics of the last evaluation."""
    metrics = json.loads((project / "evaluation/metrics.json").read_text())
    headline = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    print("\nvalidation metrics: " + "  ".join(f"{k} {v}" for k, v in headline.items()))


def build_bento(project: Path) -> None:
    """Build the Bento from `bentofile.yaml`."""
    run_step("bentoml build", [tool("bentoml"), "build", "--output", "tag"], project)


def serve_and_query(project: Path) -> None:
    """Build the Bento of `project`, serve it on localhost and classify held-out images with it."""
    build_bento(project)
    log = Path(tempfile.gettempdir()) / "orbit-demo-serve.log"
    with serving(f"{MODEL_NAME}:latest", project, log=log) as server:
        print(f"\nserving on {server.url} (server log: {log})")
        print_predictions(server.url, held_out_samples(project))


def demo(project: Path) -> None:
    """Train, serve and query the model; then report a parameter change, "merge" it and serve that."""
    run_step("train the pipeline", [tool("dvc"), "repro"], project)
    run_step("store the outputs in the DVC remote", [tool("dvc"), "push"], project)
    serve_and_query(project)
    print_metrics(project)
    from runner.report.local import demo_report, merge_demo_branch  # the PR half of the demo

    scratch = demo_report(project)
    if scratch is not None:
        merge_demo_branch(scratch)
        serve_and_query(scratch)
    print("\nthe servers are stopped; `make serve` keeps one running")


def serve(project: Path, port: int) -> None:
    """Build the Bento from the working tree and serve it until interrupted."""
    build_bento(project)
    run_step(
        "bentoml serve", [tool("bentoml"), "serve", f"{MODEL_NAME}:latest", "--port", str(port)], project
    )

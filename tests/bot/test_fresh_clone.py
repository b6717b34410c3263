"""`orbit local serve` (what `make serve` runs) from a fresh clone, with an empty BentoML store.

The clone is of the repository's committed HEAD (the working tree's changes are not in it). It has
no DVC remote, so its pull fails unless this repository's DVC cache, which it shares, holds the
committed model (after a `dvc pull` from the real remote): then it is served in seconds. Else the model
is trained, about a minute on two idle cores; the shared cache spares the data stages after one run.
"""

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bot.local import held_out_samples, predict_file
from bot.processes import free_port, tool, tool_environment
from tests.conftest import REPO, run

READY_S = 600.0  # training, when the shared cache is empty, takes most of it on a busy machine


def start_serving(clone: Path, port: int, log: Path, home: Path) -> subprocess.Popen[bytes]:
    """Start `orbit local serve` in the clone, in a session of its own, its output into `log`."""
    env = {**tool_environment(), "BENTOML_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    command = [tool("orbit"), "local", "serve", "--port", str(port)]
    with log.open("wb") as output:
        return subprocess.Popen(
            command, cwd=clone, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_for_line(process: subprocess.Popen[bytes], log: Path, line: str) -> None:
    """Wait until the output shows `line`; fail with the output if the command exits first."""
    deadline = time.monotonic() + READY_S
    while line not in log.read_text():
        assert process.poll() is None, f"orbit exited with {process.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {line!r} after {READY_S:.0f} s:\n{log.read_text()}"
        time.sleep(0.5)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop orbit as a service manager would (it stops its server), then whatever it left."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a `dvc repro` cut short, if the test failed early
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def progress(output: str) -> list[str]:
    """Return the progress lines, their times left out."""
    lines = [line for line in output.splitlines() if line.startswith("==> ")]
    return [re.sub(r" \d+( min \d+)?(\.\d)? s$", "", line) for line in lines]


@pytest.mark.slow
def test_serve_from_a_fresh_clone_with_an_empty_bentoml_home(tmp_path: Path) -> None:
    clone, home, log, port = tmp_path / "clone", tmp_path / "bentoml", tmp_path / "serve.log", free_port()
    run(["git", "clone", "--quiet", str(REPO), str(clone)], tmp_path)
    run(["dvc", "cache", "dir", "--local", str(REPO / ".dvc" / "cache")], clone)
    process = start_serving(clone, port, log, home)
    try:
        wait_for_line(process, log, f"==> serving on http://localhost:{port}")
        samples = held_out_samples(clone)
        answer = predict_file(f"http://127.0.0.1:{port}", samples[0][0])
    finally:
        stop(process)
    assert answer["prediction"] in {truth for _, truth in samples}
    lines = progress(log.read_text())
    pulled = "==> pulling the model: done in" in lines
    expected = ["==> pulling the model (dvc pull)"]
    if not pulled:  # nothing in the shared cache yet: trained here
        expected += ["==> training (dvc repro train): about a minute on two cores", "==> train: started"]
        expected += ["==> train: done in", "==> training: done in"]
    expected += ["==> importing the model into the BentoML store (model/classifier.bentomodel)"]
    expected += ["==> importing the model: done in", "==> building the Bento (bentoml build --output tag)"]
    expected += [
        "==> building the Bento: done in",
        f"==> serving on http://localhost:{port} (Ctrl-C stops it)",
    ]
    assert [line for line in lines if line in expected] == expected, log.read_text()

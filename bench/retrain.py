"""Benchmark: a retrain that changes only a `train.*` param, cold against warm, on the real pipeline.

The project is this repository's (dvc.yaml, params.yaml, model/), in a fresh git repository. The base
branch is trained once and its outputs are added to a shared cache as train.yml's push job adds them
(`dvc push` to it as a local remote: objects only). A pull request then changes `train.lr` alone and
keeps the base's dvc.lock, and is trained twice, each time in a fresh workspace with a fresh cache,
its data checked out by train.yml's own step ("Check out the pulled data"):

- cold: no shared cache (ORBIT_CACHE unset) and nothing pulled: every stage runs;
- warm: the shared cache (ORBIT_CACHE) holds the base's outputs: generate and prepare are restored.

Each time is the checkout step, then `dvc repro prepare` (generate and prepare, run or restored), then
`dvc repro` (train and evaluate, run both times): the parts are printed with the stages each ran and
the ratio, so that the saving shows beside the training, whose time varies with the machine's load.
Minutes on a CPU. `python -m bench.retrain [--lr 0.003]`.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STEP = "Check out the pulled data"


@dataclass(frozen=True)
class Retrain:
    """One retrain: its parts' times and the stages that ran (the rest were restored or unchanged)."""

    checkout: float  # train.yml's step: copying out of the shared cache, checking out
    data: float  # `dvc repro prepare`: generate and prepare, run or found unchanged
    model: float  # `dvc repro`: train and evaluate
    ran: list[str]

    @property
    def seconds(self) -> float:
        """Return the whole retrain's time."""
        return self.checkout + self.data + self.model

    def __str__(self) -> str:
        parts = (
            f"checkout {self.checkout:.1f} s, generate+prepare {self.data:.1f} s,"
            f" train+evaluate {self.model:.1f} s"
        )
        return f"{self.seconds:.1f} s ({parts}), ran {', '.join(self.ran)}"


def environment(temp: Path, cache: Path | None) -> dict[str, str]:
    """Return a runner step's environment: the venv's tools first, its own RUNNER_TEMP, the cache if any."""
    env = {k: v for k, v in os.environ.items() if k != "ORBIT_CACHE"}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", RUNNER_TEMP=str(temp), DVC_NO_ANALYTICS="1")
    return {**env, "ORBIT_CACHE": str(cache)} if cache else env


def sh(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a command; return its output, or stop with it when it fails."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def copy_project(destination: Path) -> Path:
    """Copy the tracked files of this repository, without its outputs, into a new git repository."""
    listed = sh(["git", "ls-files"], ROOT, dict(os.environ)).splitlines()
    for name in listed:
        if (ROOT / name).is_file() and not name.startswith(("evaluation/", "dvc.lock")):
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    env = dict(os.environ)
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"]):
        sh(command, destination, env)
    sh(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "base"],
        destination,
        env,
    )
    return destination


def train_base(work: Path, shared: Path) -> tuple[Path, float]:
    """Train the base branch and add its outputs to the shared cache as the push job does."""
    base = copy_project(work / "base")
    env = environment(work / "base-temp", None)
    sh(["dvc", "config", "--local", "cache.dir", str(work / "base-cache")], base, env)
    started = time.perf_counter()
    sh(["dvc", "repro"], base, env)
    seconds = time.perf_counter() - started
    sh(["dvc", "remote", "add", "--local", "--force", "orbit-shared", str(shared / "dvc")], base, env)
    sh(["dvc", "push", "--remote", "orbit-shared"], base, env)
    return base, seconds


def pull_request(base: Path, destination: Path, lr: float) -> Path:
    """Return a clone of the base with only `train.lr` changed, and the base's dvc.lock."""
    sh(["git", "clone", "-q", str(base), str(destination)], base, dict(os.environ))
    shutil.copy(base / "dvc.lock", destination / "dvc.lock")
    params = yaml.safe_load((destination / "params.yaml").read_text())
    params["train"]["lr"] = lr
    (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return destination


def checkout_step() -> str:
    """Return the script of train.yml's step that checks the pulled data out."""
    workflow = yaml.safe_load((ROOT / ".github/workflows/train.yml").read_text())
    [step] = [s for s in workflow["jobs"]["train"]["steps"] if s.get("name", "").startswith(STEP)]
    return str(step["run"])


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    output = sh(command, cwd, env)
    return time.perf_counter() - started, output


def retrain(project: Path, temp: Path, cache: Path | None) -> Retrain:
    """Check the pulled data out as train.yml does, then `dvc repro` (the data stages first); time each."""
    (temp / "orbit-data/cache").mkdir(parents=True)
    env = environment(temp, cache)
    checkout, _ = timed(["bash", "--noprofile", "--norc", "-e", "-c", checkout_step()], project, env)
    data, first = timed(["dvc", "repro", "prepare"], project, env)
    model, second = timed(["dvc", "repro"], project, env)
    lines = (first + second).splitlines()
    ran = [line.split("'")[1] for line in lines if line.startswith("Running stage '")]
    return Retrain(checkout, data, model, ran)


def main() -> None:
    """Measure a cold and a warm retrain and print both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lr", type=float, default=0.003, help="the PR's train.lr (the base's is params.yaml's)"
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orbit-retrain-") as folder:
        work = Path(folder)
        shared = work / "shared"
        base, base_seconds = train_base(work, shared)
        print(f"base trained in {base_seconds:.1f} s; its outputs added to the shared cache")
        cold = retrain(pull_request(base, work / "cold", arguments.lr), work / "cold-temp", None)
        warm = retrain(pull_request(base, work / "warm", arguments.lr), work / "warm-temp", shared)
    print(f"cold retrain (train.lr={arguments.lr}, empty cache): {cold}")
    print(f"warm retrain (the shared cache holds the base's outputs): {warm}")
    print(
        f"cold / warm: {cold.seconds / warm.seconds:.2f}x;"
        f" generate+prepare, cold / warm: {cold.data / warm.data:.1f}x"
    )
    if set(warm.ran) != {"train", "evaluate"}:
        raise SystemExit(f"the warm retrain ran {warm.ran}: generate and prepare should have been restored")


if __name__ == "__main__":
    main()

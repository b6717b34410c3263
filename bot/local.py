"""`orbit local demo` and `orbit local serve`: the whole loop on this machine, on the bundled data.

The demo trains, serves and queries the model, then shows the pull-request half: a parameter change
on a branch of a scratch clone, its report against the base, the merge, and the new model served.
"""

import contextlib
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import yaml

from bot.processes import (
    LocalRunError,
    LocalServer,
    free_port,
    run_step,
    stop,
    tool,
    tool_environment,
    wait_ready,
)
from model import MODEL_NAME
from runner.report.local import train

DEMO_BRANCH = "demo/higher-learning-rate"


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


def _git(project: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=check)
    return result.stdout.strip() if result.returncode == 0 else ""


def demo_report(project: Path) -> Path | None:
    """Change a parameter on a demo branch of a scratch copy, train it, print its report; return the copy."""
    if not (project / ".git").exists():
        print("\n(the report demo needs the project as a git clone; skipped)")
        return None
    project = project.resolve()  # the scratch clone shares this project's DVC cache by absolute path
    base = _git(project, "rev-parse", "--abbrev-ref", "HEAD")
    scratch = Path(tempfile.mkdtemp(prefix="orbit-demo-"))
    run_step(
        "copy the project to a scratch clone",
        ["git", "clone", "--quiet", str(project), str(scratch)],
        project,
    )
    # Share the DVC cache: unchanged stages are restored from it instead of run again.
    run_step(
        "share the DVC cache", [tool("dvc"), "cache", "dir", "--local", str(project / ".dvc/cache")], scratch
    )
    _git(scratch, "switch", "--quiet", "-c", DEMO_BRANCH)
    params = yaml.safe_load((scratch / "params.yaml").read_text())
    params["train"]["lr"] = round(params["train"]["lr"] * 1.5, 6)
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _git(scratch, "commit", "--quiet", "-am", f"Raise the learning rate to {params['train']['lr']}")
    report = train(scratch, base, scratch / "report")
    if report.failed:
        raise LocalRunError(f"stage {report.stages.failed} failed; see {scratch / 'report' / 'report.md'}")
    print(f"\n==> the report {DEMO_BRANCH} would get on its pull request:\n")
    print((scratch / "report" / "report.md").read_text())
    return scratch


def merge_demo_branch(scratch: Path) -> None:
    """Merge the demo branch into the branch it started from, as merging its PR would."""
    base = (
        _git(scratch, "rev-parse", "--abbrev-ref", "origin/HEAD", check=False).removeprefix("origin/")
        or "main"
    )
    print(f"\n==> merge {DEMO_BRANCH} into {base}, as merging its pull request would, and serve that model")
    _git(scratch, "switch", "--quiet", base)
    _git(scratch, "merge", "--quiet", "--ff-only", DEMO_BRANCH)

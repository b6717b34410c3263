"""`orbit local demo` and `orbit local serve`: the whole loop on this machine, on the bundled data.

The demo trains, serves and queries the model, then shows the pull-request half: a parameter change
on a branch of a scratch clone, its report against the base, the merge, and the new model served.

Both work from a fresh clone and an empty BentoML store: a model that is missing or stale (`dvc
status`) is pulled from the DVC remote, else trained (`dvc repro`), then imported into the store
before the Bento is built. Each step prints a line as it starts and its time when it ends.
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
    check_port,
    free_port,
    interrupted_by_sigterm,
    run_step,
    shown,
    stop,
    stream_stages,
    timed,
    tool,
    tool_environment,
    wait_ready,
)
from model import MODEL_NAME
from runner.report.local import train

DEMO_BRANCH = "demo/higher-learning-rate"
MODEL_FILE = Path("model/classifier.bentomodel")  # the trained model, as the `train` stage exports it
TRAIN_STAGE = "train"
TRAINING_TIME = "about a minute on two cores"


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


def check_project(project: Path) -> None:
    """Fail at once, naming `--project`, unless it is a model project (a `dvc.yaml` at its root)."""
    if not (project / "dvc.yaml").is_file():
        raise LocalRunError(
            f"--project {project} has no dvc.yaml: run from the model project's root or pass --project"
        )


def model_is_current(project: Path) -> bool:
    """Return whether the model file is there and `dvc status` finds it and its inputs unchanged."""
    if not (project / MODEL_FILE).is_file():
        return False
    command = [tool("dvc"), "status", "--json", "--with-deps", TRAIN_STAGE]
    result = subprocess.run(
        command, cwd=project, env=tool_environment(), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [""])[-1]
        raise LocalRunError(f"'{shown(command)}' failed with exit code {result.returncode}: {last}")
    return not json.loads(result.stdout or "{}")


def pull_model(project: Path) -> bool:
    """Pull the pipeline's outputs from the project's DVC remote; return whether that worked."""
    try:
        run_step("pulling the model", [tool("dvc"), "pull"], project)
    except LocalRunError as error:
        print(f"==> {error}: training the model here instead", flush=True)
        return False
    return True


def reproduce(project: Path, name: str, targets: list[str]) -> None:
    """Run `dvc repro` (of `targets`, or the whole pipeline), timing each stage; stop if it fails."""
    command = [tool("dvc"), "repro", *targets]
    print(f"\n==> {name} ({shown(command)}): {TRAINING_TIME}", flush=True)
    finished = stream_stages(name, command, project)
    if finished.returncode != 0:
        raise LocalRunError(f"'{shown(command)}' failed with exit code {finished.returncode}")


def import_model(project: Path) -> None:
    """Put the project's trained model into the BentoML store (the Bento is built from the store)."""
    print(f"\n==> importing the model into the BentoML store ({MODEL_FILE})", flush=True)
    with timed("importing the model"):
        from model.classifier import import_bentomodel  # torch: only once there is a model to read

        stored = import_bentomodel(project / MODEL_FILE)
    print(f"stored {stored.tag}", flush=True)


def ensure_model(project: Path) -> None:
    """Make the trained model current (pulled from the DVC remote, else trained here) and stored."""
    if model_is_current(project):
        print(f"\n==> the model is up to date ({MODEL_FILE})", flush=True)
    elif not pull_model(project):
        reproduce(project, "training", [TRAIN_STAGE])
    elif not model_is_current(project):
        print("==> the pulled model is not the working tree's (dvc status): training it", flush=True)
        reproduce(project, "training", [TRAIN_STAGE])
    import_model(project)


def build_bento(project: Path) -> None:
    """Build the Bento from `bentofile.yaml`."""
    run_step("building the Bento", [tool("bentoml"), "build", "--output", "tag"], project)


def serve_and_query(project: Path) -> None:
    """Build the Bento of `project`, serve it on localhost and classify held-out images with it."""
    import_model(project)
    build_bento(project)
    log = Path(tempfile.gettempdir()) / "orbit-demo-serve.log"
    with serving(f"{MODEL_NAME}:latest", project, log=log) as server:
        print(f"\nserving on {server.url} (server log: {log})")
        print_predictions(server.url, held_out_samples(project))


def demo(project: Path) -> None:
    """Train, serve and query the model; then report a parameter change, "merge" it and serve that."""
    check_project(project)
    reproduce(project, "training the pipeline", [])
    run_step("storing the outputs in the DVC remote", [tool("dvc"), "push"], project)
    serve_and_query(project)
    print_metrics(project)

    scratch = demo_report(project)
    if scratch is not None:
        merge_demo_branch(scratch)
        serve_and_query(scratch)
    print("\nthe servers are stopped; `make serve` keeps one running")


def serve(project: Path, port: int) -> None:
    """Pull or train the model as needed, build the Bento and serve it on localhost until stopped."""
    check_project(project)
    check_port(port)
    with interrupted_by_sigterm():
        ensure_model(project)
        build_bento(project)
        with serving(f"{MODEL_NAME}:latest", project, port) as server:
            print(f"\n==> serving on http://localhost:{port} (Ctrl-C stops it)", flush=True)
            code = server.process.wait()
    raise LocalRunError(f"the server exited with code {code}")


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

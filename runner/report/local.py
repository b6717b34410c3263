"""`orbit local train`: the pipeline on the working tree and the report a PR would get, on this machine."""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from model.local import LocalRunError, run_step, tool, tool_environment
from runner.report.build import RunRecord, build_report
from runner.report.bundle import Report

DEMO_BRANCH = "demo/higher-learning-rate"


def repro(project: Path) -> RunRecord:
    """Run `dvc repro`, showing its output as it comes and keeping it for the report."""
    print(f"\n==> train the pipeline: dvc repro ({project})", flush=True)
    started = time.monotonic()
    process = subprocess.Popen(
        [tool("dvc"), "repro"],
        cwd=project,
        env=tool_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        sys.stdout.write(line)
        lines.append(line)
    process.wait()
    return RunRecord("".join(lines), time.monotonic() - started)


def train(project: Path, base: str, out: Path) -> Report:
    """Train the working tree and write the report against `base` into `out`."""
    run = repro(project)
    report = build_report(project, base, out, run)
    print(f"\nreport against {base}: {out / 'report.html'} (Markdown: {out / 'report.md'})")
    return report


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

"""`orbit local train`: the pipeline on the working tree and the report a PR would get, on this machine."""

import subprocess
import sys
import time
from pathlib import Path

from bot.processes import tool, tool_environment
from runner.report.build import RunRecord, build_report
from runner.report.bundle import Report


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

"""`orbit local train`: the pipeline on the working tree and the report a PR would get, on this machine."""

from pathlib import Path

from bot.processes import shown, stream_stages, tool
from runner.report.build import RunRecord, build_report, resolve
from runner.report.bundle import Report


def repro(project: Path) -> RunRecord:
    """Run `dvc repro`, showing its output and each stage's time as they come; keep it for the report."""
    command = [tool("dvc"), "repro"]
    print(f"\n==> training the pipeline ({shown(command)} in {project})", flush=True)
    finished = stream_stages("training the pipeline", command, project)
    return RunRecord(finished.output, finished.seconds)


def train(project: Path, base: str, out: Path) -> Report:
    """Train the working tree and write the report against `base` into `out`."""
    resolve(project, base)  # an unknown base fails now, not after minutes of training
    run = repro(project)
    report = build_report(project, base, out, run)
    print(f"\nreport against {base}: {out / 'report.html'} (Markdown: {out / 'report.md'})")
    return report

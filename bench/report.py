"""Benchmark the training report.

1. Building the bundle (`orbit report build`, a fresh process as in the job) for the default
   pipeline's committed outputs, in a scratch clone where a parameter and the metrics changed.
   Baseline, same run: the DVC commands a CML workflow runs for the same comparison
   (`dvc params diff`, `dvc metrics diff`, `dvc plots diff`). Goal: at most 0.5x their time
   (medians of the same run). `--build-only` runs this part alone.
2. Publishing: from a `workflow_run` completed delivery arriving at the real bot to the comment
   request reaching the GitHub double (artifact download, four PNGs through the Git Data API, check
   run). Baseline, same run: a `/help` comment delivery to its reply request. Goal: under 1 s.
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

from bench.harness import (
    ROOT,
    Delivery,
    arrivals,
    bot_server,
    dispatched,
    help_comment,
    record_runs,
    recorded_run,
    send_one_by_one,
    serve_double,
    signed,
    start_in_thread,
)
from bot import commands
from bot.processes import stop, tool, tool_environment
from bot.router import Router
from bot.runs import TRAIN, TrainingRun
from runner.report import publish as reports
from runner.report.build import resolve
from runner.report.gitcollect import Unsupported, collect_from_git

BUILDS, PUBLISHES = 5, 20
BUILD_GOAL = 0.5  # the build's time against the DVC commands it replaces
GAP = 1.5  # one at a time: the latency of each delivery, not of a queue
SHA = "c0ffee" + "a" * 34


def scratch_clone(folder: Path) -> Path:
    """Clone this repository and change a parameter and the metrics, as a training run would."""
    project = folder / "project"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(project)], check=True)
    params = (project / "params.yaml").read_text().replace("lr: 0.002", "lr: 0.003")
    (project / "params.yaml").write_text(params)
    metrics = json.loads((project / "evaluation/metrics.json").read_text())
    metrics["val_acc"] = round(metrics["val_acc"] + 0.01, 4)
    (project / "evaluation/metrics.json").write_text(json.dumps(metrics))
    return project


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=tool_environment(), check=True, capture_output=True)
    return time.perf_counter() - started


def compile_bytecode() -> None:
    """Write the bytecode of orbit's packages, as installing them does: PYTHONDONTWRITEBYTECODE may be set."""
    packages = [str(ROOT / name) for name in ("bot", "runner", "model")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True, capture_output=True)


def bench_build(folder: Path) -> tuple[float, float, Path]:
    compile_bytecode()
    project = scratch_clone(folder)
    try:  # the build reads through DVC's API only where this reader refuses the project
        collect_from_git(project, resolve(project, "main"))
        print("reader: git and the DVC cache (not DVC's API)")
    except Unsupported as why:
        print(f"reader: DVC's API ({why})")
    out = folder / "bundle"
    ours = [tool("orbit"), "report", "build", "--base", "main", "--out", str(out)]
    dvc = tool("dvc")
    theirs = [
        [dvc, "params", "diff", "main", "--md"],
        [dvc, "metrics", "diff", "main", "--md"],
        [dvc, "plots", "diff", "main", "-o", str(folder / "dvc_plots")],
    ]
    build_times, baseline_times = [], []
    for _ in range(BUILDS):
        build_times.append(timed(ours, project))
        baseline_times.append(sum(timed(command, project) for command in theirs))
    print(f"  builds: {' '.join(f'{t:.2f}' for t in build_times)} s")
    print(f"  DVC commands: {' '.join(f'{t:.2f}' for t in baseline_times)} s")
    return statistics.median(build_times), statistics.median(baseline_times), out


def bundle_zip(out: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(out.iterdir()):
            archive.write(path, path.name)
    return target


def run_completed(run_id: int) -> Delivery:
    return signed(
        "workflow_run",
        {
            "action": "completed",
            "workflow_run": {
                "id": run_id,
                "display_title": f"orbit/train PR #{run_id} at {SHA}",
                **dispatched(TRAIN),
                "conclusion": "success",
                "html_url": f"https://github.com/octo-org/model/actions/runs/{run_id}",
            },
            "repository": {"full_name": "octo-org/model", "html_url": "https://github.com/octo-org/model"},
            "installation": {"id": 1},
        },
        f"run-{run_id}",
    )


def bench_publish(folder: Path, bundle: Path) -> tuple[list[float], list[float]]:
    github = serve_double(
        "tests.github_double:report_app",
        "/_report_requests",
        {**tool_environment(), "ORBIT_BENCH_BUNDLE": str(bundle)},
    )
    try:
        server = bot_server(
            folder / "orbit.db", github.url, Router.compose([reports.router, commands.router])
        )
        thread = start_in_thread(server)
        url = f"http://127.0.0.1:{server.config.port}"
        trained = [TrainingRun(n, SHA).title for n in range(1, PUBLISHES + 1)]
        record_runs(
            folder / "orbit.db", [recorded_run(n, TRAIN, title) for n, title in enumerate(trained, 1)]
        )
        with httpx.Client(base_url=github.url) as poll:
            helps = [help_comment(n) for n in range(1, PUBLISHES + 1)]
            help_sent = asyncio.run(send_one_by_one(url, helps, GAP))
            help_done = arrivals(poll, "comments", PUBLISHES, 60)
            runs = [run_completed(n) for n in range(1, PUBLISHES + 1)]
            run_sent = asyncio.run(send_one_by_one(url, runs, GAP))
            run_done = arrivals(poll, "comments", 2 * PUBLISHES, 60)[PUBLISHES:]
        server.should_exit = True
        thread.join(timeout=10)
    finally:
        stop(github.process)
    return [(d - s) * 1000 for s, d in zip(help_sent, help_done, strict=True)], [
        (d - s) * 1000 for s, d in zip(run_sent, run_done, strict=True)
    ]


def main(build_only: bool) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        build, baseline, out = bench_build(folder)
        sizes = sum(p.stat().st_size for p in out.iterdir()) / 2**20
        print(f"bundle build (median of {BUILDS}): {build:.2f} s; DVC diff commands: {baseline:.2f} s")
        print(f"  ratio {build / baseline:.2f}x the DVC commands; bundle {sizes:.1f} MiB")
        print(f"  goal <= {BUILD_GOAL}x: {'met' if build <= BUILD_GOAL * baseline else 'NOT met'}")
        if build_only:
            return
        help_ms, publish_ms = bench_publish(folder, bundle_zip(out, folder / "bundle.zip"))
    p50, worst = statistics.median(publish_ms), max(publish_ms)
    print(
        f"workflow_run delivery -> comment request ({PUBLISHES} runs): p50 {p50:.0f} ms, max {worst:.0f} ms"
    )
    help_p50 = statistics.median(help_ms)
    print(f"  /help delivery -> reply request: p50 {help_p50:.0f} ms; ratio {p50 / help_p50:.1f}x")
    print(f"  goal < 1 s: {'met' if worst < 1000 else 'NOT met'}")


if __name__ == "__main__":
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    main(build_only="--build-only" in sys.argv[1:])

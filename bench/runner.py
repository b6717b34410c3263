"""Benchmark: from a `workflow_job` queued delivery arriving to the Pod create request at the API double.

The bot runs as `orbit serve` does, in its own process, with its shipped defaults (SQLite inbox, 8
workers, githubkit, the official Kubernetes client reading a kubeconfig), against a GitHub double and
a Kubernetes API double, each in its own process on localhost.

1. 200 jobs arrive in bursts of 20 at once, 0.5 s apart. Goal: p99 under 100 ms.
   Baseline, same run and same bot: a burst of 20 `/help` comments, delivery to reply request. The
   bot's CPU time per job is printed too: on a machine whose cores the doubles and the sender share,
   it is what the bot itself spends.
2. 100 jobs queued at once, in one burst, to a warm bot: with a GPU cap of 100 every job gets a pod,
   goal: the last pod created within 2 s of the burst; with a cap of 40, exactly 40 pods exist once
   every job was handled (the GitHub double has answered each job's read), and no more.
"""

import sys
from pathlib import Path

# This file is named like the `runner` package it measures: import from the repository root, not from here.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

import asyncio  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import httpx  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from bench.harness import (  # noqa: E402
    DISPATCHED_HEAD,
    SECRET,
    Delivery,
    arrivals,
    help_comment,
    percentile,
    record_runs,
    recorded_run,
    send_burst,
    serve_double,
    signed,
)
from bot.processes import LocalServer, start_uvicorn, stop  # noqa: E402
from bot.runs import TRAIN, TrainingRun  # noqa: E402
from tests.kube_double import write_kubeconfig  # noqa: E402

JOBS, BURST = 200, 20
AT_ONCE, CAPS = 100, (100, 40)  # part 2: one burst of 100 jobs, under each GPU cap
GOAL_P99_MS, GOAL_ALL_S = 100, 2.0


def start_bot(folder: Path, github_url: str, kube_url: str, max_gpus: int = 10_000) -> LocalServer:
    """Start the bot as `orbit serve` runs it, with at most `max_gpus` GPU runner pods at once."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(write_kubeconfig(folder / "kubeconfig", kube_url)),
        "ORBIT_GITHUB_APP_ID": "1",
        "ORBIT_GITHUB_PRIVATE_KEY": key.decode(),
        "ORBIT_WEBHOOK_SECRET": SECRET.decode(),
        "ORBIT_GITHUB_API_URL": github_url,
        "ORBIT_DATABASE_URL": f"sqlite:///{folder / 'orbit.db'}",
        "ORBIT_MAX_GPU_RUNNERS": str(max_gpus),
    }
    options = ["--factory", "--no-access-log", "--workers", os.environ.get("ORBIT_BENCH_PROCESSES", "1")]
    return start_uvicorn("bot.app:app_from_environment", ROOT, "/healthz", env, options, timeout=60)


def delivery(job_id: int) -> Delivery:
    return signed(
        "workflow_job",
        {
            "action": "queued",
            "workflow_job": {
                "id": job_id,
                "run_id": job_id + 1_000_000,
                "status": "queued",
                "labels": ["self-hosted", "orbit-gpu"],
                "head_sha": DISPATCHED_HEAD,
            },
            "repository": {"full_name": "octo-org/model"},
            "installation": {"id": 1},
        },
        f"job-{job_id}",
    )


def at_once(job_ids: range) -> list[Delivery]:
    """Return the deliveries of jobs queued at once (one burst)."""
    return [delivery(job_id) for job_id in job_ids]


async def send_all(url: str) -> dict[int, float]:
    """Send the jobs' deliveries in bursts of `BURST` at once, 0.5 s apart; return when each was sent."""
    sent: dict[int, float] = {}
    for burst in range(JOBS // BURST):
        ids = range(burst * BURST + 1, (burst + 1) * BURST + 1)
        times = await send_burst(url, [delivery(job_id) for job_id in ids])
        sent.update(zip(ids, times, strict=True))
        await asyncio.sleep(0.5)
    return sent


def pod_creations(kube: httpx.Client) -> dict[int, float]:
    """Return when the double received each pod's create request (CLOCK_MONOTONIC, shared by processes)."""
    seen = kube.get("/_requests").json()
    return {
        int(what.rsplit("-", 1)[1]): at
        for at, verb, what in seen
        if verb == "CREATE" and what.startswith("pods/")
    }


def help_burst(url: str, github: httpx.Client, count: int = BURST) -> list[float]:
    """Send `count` `/help` comments at once; return each reply's latency in ms, in order of arrival.

    One comment goes first, unmeasured, so that the App's token and the connections exist already.
    """
    before = len(arrivals(github, "comments", 0))
    asyncio.run(send_burst(url, [help_comment(BURST + 1)]))
    replies_before = len(arrivals(github, "comments", before + 1))
    started = time.monotonic()
    asyncio.run(send_burst(url, [help_comment(number) for number in range(1, count + 1)]))
    done = arrivals(github, "comments", replies_before + count)[replies_before:]
    return sorted((at - started) * 1000 for at in done)


def cpu_seconds(pid: int) -> float:
    """Return the CPU time a process has used (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def burst_of_jobs(url: str, folder: Path, kube_url: str, github_url: str, cap: int) -> tuple[float, int]:
    """Send `AT_ONCE` jobs in one burst to a warm bot capped at `cap` GPUs; return the last pod's time.

    Returns the seconds from the burst to the last pod create request, and the pods that exist once
    every job was handled.
    """
    first = cap * 1_000  # job ids of their own: runs recorded for them, pods named after them
    ids = range(first + 1, first + AT_ONCE + 1)
    record_runs(
        folder / "orbit.db",
        [recorded_run(job + 1_000_000, TRAIN, TrainingRun(7, "a" * 40).title) for job in ids],
    )
    with httpx.Client(base_url=github_url) as github, httpx.Client(base_url=kube_url) as kube:
        reads_before = github.get("/_counts").json()["job_reads"]
        sent = asyncio.run(send_burst(url, at_once(ids)))
        deadline = time.monotonic() + 30
        while github.get("/_counts").json()["job_reads"] - reads_before < AT_ONCE:
            if time.monotonic() > deadline:
                raise RuntimeError("the bot did not handle every job within 30 s")
            time.sleep(0.1)
        time.sleep(0.5)  # the last pods' requests in flight
        created = pod_creations(kube)
        pods = kube.get("/api/v1/namespaces/orbit-runners/pods").json()["items"]
    last = max(created[job] for job in ids if job in created) - min(sent)
    return last, sum(1 for pod in pods if int(pod["metadata"]["labels"]["orbit.dev/job"]) in ids)


def queued_at_once() -> list[str]:
    """Part 2: one burst of `AT_ONCE` jobs under each cap, each with a fresh bot and fresh doubles."""
    lines = []
    for cap in CAPS:
        kube = serve_double("tests.kube_double:app", "/_requests")
        github = serve_double("tests.github_double:app", "/repos/o/r/actions/runs/1")
        try:
            with tempfile.TemporaryDirectory() as scratch:
                record_runs(Path(scratch) / "orbit.db", [])
                bot = start_bot(Path(scratch), github.url, kube.url, max_gpus=cap)
                try:
                    with httpx.Client(base_url=github.url) as poll:
                        help_burst(bot.url, poll, count=1)  # warm: the App's token, the connections
                    last, pods = burst_of_jobs(bot.url, Path(scratch), kube.url, github.url, cap)
                finally:
                    stop(bot.process)
        finally:
            stop(kube.process)
            stop(github.process)
        expected = min(cap, AT_ONCE)
        lines += [
            f"{AT_ONCE} jobs queued at once, GPU cap {cap}: {pods} pods (expected {expected}), "
            f"last pod create request {last * 1000:.0f} ms after the burst",
            f"goal exactly {expected} pods: {'met' if pods == expected else 'NOT met'}; "
            f"goal all within {GOAL_ALL_S:.0f} s: {'met' if last < GOAL_ALL_S else 'NOT met'}",
        ]
    return lines


def main() -> None:
    kube = serve_double("tests.kube_double:app", "/_requests")
    github = serve_double("tests.github_double:app", "/repos/o/r/actions/runs/1")
    created: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory() as scratch, httpx.Client(base_url=github.url) as github_poll:
            runs = [
                recorded_run(job + 1_000_000, TRAIN, TrainingRun(7, "a" * 40).title)
                for job in range(1, JOBS + 1)
            ]
            record_runs(Path(scratch) / "orbit.db", runs)  # the runs orbit dispatched: their jobs get pods
            bot = start_bot(Path(scratch), github.url, kube.url)
            try:
                baseline = help_burst(bot.url, github_poll)
                processes = [bot.process.pid, github.process.pid, kube.process.pid]
                cpu_before = [cpu_seconds(pid) for pid in processes]
                sent = asyncio.run(send_all(bot.url))
                deadline = time.monotonic() + 60
                with httpx.Client(base_url=kube.url) as poll:
                    while len(created := pod_creations(poll)) < JOBS and time.monotonic() < deadline:
                        time.sleep(0.5)
                cpu_after = [cpu_seconds(pid) for pid in processes]
                cpu_per_job = [(b - a) / JOBS * 1000 for a, b in zip(cpu_before, cpu_after, strict=True)]
                tokens = github_poll.get("/_counts").json()["tokens_minted"]
            finally:
                stop(bot.process)
    finally:
        stop(kube.process)
        stop(github.process)
    burst_lines = queued_at_once()
    latencies = [(created[job] - sent[job]) * 1000 for job in created]
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    bot_cpu, doubles_cpu = cpu_per_job[0], sum(cpu_per_job[1:])
    print(f"pods created: {len(created)}/{JOBS} (bursts of {BURST}); bot CPU {bot_cpu:.1f} ms per job")
    print(
        f"the doubles' CPU {doubles_cpu:.1f} ms per job; the bot's interpreter alone needs "
        f"{BURST * bot_cpu:.0f} ms of one core for a burst of {BURST} (the last job's floor)"
    )
    print(f"installation tokens minted for {JOBS + BURST + 1} deliveries: {tokens}")
    print(f"delivery -> pod create request: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(latencies):.0f} ms")
    help50, help_max = percentile(baseline, 0.5), max(baseline)
    print(f"baseline, a burst of {BURST} /help: delivery -> reply p50 {help50:.0f} ms, max {help_max:.0f} ms")
    print(f"ratio to the baseline: p50 {p50 / help50:.2f}x, p99 / max {p99 / help_max:.2f}x")
    print(f"goal p99 < {GOAL_P99_MS} ms: {'met' if p99 < GOAL_P99_MS else 'NOT met'}")
    for line in burst_lines:
        print(line)


if __name__ == "__main__":
    main()

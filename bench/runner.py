"""Benchmark: from a `workflow_job` queued delivery arriving to the Pod create request at the API double.

The real bot (ingest, inbox, workers, GitHub client, Kubernetes client) runs against a GitHub double and a
Kubernetes API double on localhost. 200 jobs arrive in bursts of 20 at once. Goal: p99 under 500 ms.
"""

import sys
from pathlib import Path

# This file is named like the `runner` package it measures: import from the repository root, not from here.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

import asyncio  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import httpx  # noqa: E402
import orjson  # noqa: E402
import uvicorn  # noqa: E402
from kubernetes import client  # noqa: E402

from bench.harness import SECRET, bot_server, serve_double, start_in_thread  # noqa: E402
from bot.delivery import signature_of  # noqa: E402
from bot.router import Router  # noqa: E402
from model.local import stop  # noqa: E402
from runner.classes import default_classes  # noqa: E402
from runner.jobs import Runners, make_router  # noqa: E402
from runner.kube import KubeCluster  # noqa: E402

JOBS, BURST = 200, 20


def bot_app(database: Path, github_url: str, kube_url: str) -> uvicorn.Server:
    classes = {
        k: v.__class__(**{**v.__dict__, "max_pods": 10_000})
        for k, v in default_classes("img", "nvidia.com/gpu", 1).items()
    }
    cluster = KubeCluster("orbit", client.CoreV1Api(client.ApiClient(client.Configuration(host=kube_url))))
    return bot_server(database, github_url, Router.compose([make_router(Runners(cluster, classes))]))


def delivery(job_id: int) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(
        {
            "action": "queued",
            "workflow_job": {
                "id": job_id,
                "run_id": job_id + 1_000_000,
                "status": "queued",
                "labels": ["self-hosted", "orbit-gpu"],
                "head_sha": "f" * 40,
            },
            "repository": {"full_name": "octo-org/model"},
            "installation": {"id": 1},
        }
    )
    headers = {
        "content-type": "application/json",
        "x-github-event": "workflow_job",
        "x-github-delivery": f"job-{job_id}",
        "x-hub-signature-256": signature_of(SECRET, body),
    }
    return body, headers


async def send_all(url: str) -> dict[int, float]:
    sent: dict[int, float] = {}
    async with httpx.AsyncClient(base_url=url) as http:
        for burst in range(JOBS // BURST):
            ids = range(burst * BURST + 1, (burst + 1) * BURST + 1)

            async def one(job_id: int) -> None:
                body, headers = delivery(job_id)
                sent[job_id] = time.monotonic()
                response = await http.post("/webhook", content=body, headers=headers)
                assert response.status_code == 202

            await asyncio.gather(*(one(i) for i in ids))
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


def main() -> None:
    kube = serve_double("tests.kube_double:app", "/_requests")
    github = serve_double("tests.github_double:app", "/repos/o/r/actions/runs/1")
    kube_url, github_url = kube.url, github.url
    created: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            server = bot_app(Path(scratch) / "orbit.db", github_url, kube_url)
            thread = start_in_thread(server)
            sent = asyncio.run(send_all(f"http://127.0.0.1:{server.config.port}"))
            deadline = time.monotonic() + 60
            with httpx.Client(base_url=kube_url) as poll:
                while len(created := pod_creations(poll)) < JOBS and time.monotonic() < deadline:
                    time.sleep(0.5)
            server.should_exit = True
            thread.join(timeout=10)
    finally:
        stop(kube.process)
        stop(github.process)
    latencies = sorted((created[job] - sent[job]) * 1000 for job in created)
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1]
    print(f"pods created: {len(created)}/{JOBS} (bursts of {BURST})")
    print(f"delivery -> pod create request: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {latencies[-1]:.0f} ms")
    print(f"goal p99 < 500 ms: {'met' if p99 < 500 else 'NOT met'}")


if __name__ == "__main__":
    main()

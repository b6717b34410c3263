"""Benchmark: from a deploy.yml run's completed delivery to the deployment status `success`.

The real bot (ingest, inbox, workers, githubkit, the kubernetes client) runs against a GitHub double
and a Kubernetes API double on localhost, each in its own process; the rollout is instant there, so
this measures the bot: the artifact read, five server-side applies, the rollout checks, the smoke
test through the service proxy and the statuses. 50 deploys, one after another. Goal: under 2 s.
Baseline, same run: a `/help` comment delivery to its reply request.
"""

import asyncio
import json
import statistics
import tempfile
import zipfile
from pathlib import Path

import httpx
from kubernetes import client

from bench.harness import (
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
from bot.processes import stop, tool_environment
from bot.router import Router
from bot.runs import DEPLOY, DeployRun
from deploy.flow import Deployer, router_for
from deploy.kube import KubeModelCluster
from deploy.manifests import SERVICE
from deploy.rollout import Timing

DEPLOYS = 50
REGISTRY = "registry.example.com/octo-org"
SHA = "e" * 40


def image_zip(folder: Path) -> Path:
    path = folder / "image.zip"
    with zipfile.ZipFile(path, "w") as archive:
        image = {"image": f"{REGISTRY}/{SERVICE}", "digest": "sha256:" + "1" * 64}
        archive.writestr("image.json", json.dumps(image))
    return path


def build_completed(n: int) -> Delivery:
    run = {
        "id": n,
        **dispatched(DEPLOY, "o/m"),
        "display_title": DeployRun(n, "production", n, SHA).title,
        "conclusion": "success",
        "html_url": "",
    }
    payload: dict[str, object] = {
        "action": "completed",
        "workflow_run": run,
        "repository": {"full_name": "o/m"},
        "installation": {"id": 1},
    }
    return signed("workflow_run", payload, f"build-{n}")


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        env = {**tool_environment(), "ORBIT_BENCH_IMAGE": str(image_zip(folder))}
        github = serve_double("tests.github_double:deploy_app", "/_report_requests", env)
        kube = serve_double("tests.kube_double:app", "/_requests")
        try:
            cluster = KubeModelCluster("models", client.ApiClient(client.Configuration(host=kube.url)))
            deployer = Deployer(
                cluster,
                "models",
                SERVICE,
                REGISTRY,
                "example.com",
                timing=Timing(30, 0.05),
            )
            server = bot_server(
                folder / "orbit.db", github.url, Router.compose([router_for(deployer), commands.router])
            )
            thread = start_in_thread(server)
            url = f"http://127.0.0.1:{server.config.port}"
            titles = [DeployRun(n, "production", n, SHA).title for n in range(1, DEPLOYS + 1)]
            runs = [recorded_run(n, DEPLOY, title, "o/m") for n, title in enumerate(titles, 1)]
            record_runs(folder / "orbit.db", runs)
            with httpx.Client(base_url=github.url) as poll:
                help_sent = asyncio.run(send_one_by_one(url, [help_comment(n) for n in range(1, 21)], 0.3))
                help_done = arrivals(poll, "comments", 20)
                deliveries = [build_completed(n) for n in range(1, DEPLOYS + 1)]
                sent = asyncio.run(send_one_by_one(url, deliveries, 0.5))
                done = arrivals(poll, "deployment-status success", DEPLOYS)
            server.should_exit = True
            thread.join(timeout=10)
        finally:
            stop(github.process)
            stop(kube.process)
    latencies = sorted((d - s) * 1000 for s, d in zip(sent, done, strict=True))
    baseline = statistics.median((d - s) * 1000 for s, d in zip(help_sent, help_done, strict=False))
    p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]
    print(f"build completed -> status success ({DEPLOYS} deploys): p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    print(f"  /help delivery -> reply: p50 {baseline:.0f} ms; ratio {p50 / baseline:.1f}x")
    print(f"  goal < 2 s: {'met' if p99 < 2000 else 'NOT met'}")


if __name__ == "__main__":
    main()

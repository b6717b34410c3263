"""Start-up warm-ups: what the first event would pay once (a TLS context, githubkit's REST modules) is
paid before the bot serves, and a warm-up that fails never stops the start."""

import asyncio
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from bot import kube_api
from bot.app import warmups
from bot.errors import TemporaryError
from bot.github import GitHubAppClient
from bot.github.client import REST_AREAS
from bot.inbox import Inbox, make_engine
from bot.kube_api import KubeApi
from bot.web import create_app
from runner.classes import default_classes
from runner.jobs import Runners
from runner.kube import KubeCluster
from tests.bot.test_github_client import PEM
from tests.kube_double import KubeState, serve_kube

ROOT = Path(__file__).resolve().parents[2]


def counting_tls_contexts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    made: list[object] = []
    real = kube_api.tls_context

    def counted(configuration: client.Configuration) -> object:
        made.append(configuration)
        return real(configuration)

    monkeypatch.setattr(kube_api, "tls_context", counted)
    return made


def api_at(url: str) -> KubeApi:
    return KubeApi(client.ApiClient(client.Configuration(host=url)))


@pytest.mark.parametrize("warmed", [True, False])
def test_a_warmed_kubernetes_pool_serves_the_first_request(
    monkeypatch: pytest.MonkeyPatch, warmed: bool
) -> None:
    made = counting_tls_contexts(monkeypatch)

    async def first_request(api: KubeApi) -> tuple[int, object]:
        if warmed:
            await api.warm()
            assert len(made) == 1, "the warm-up makes the loop's pool and its TLS context"
        return await api.ajson("GET", "/api/v1/namespaces/orbit-runners/pods", "list pods")

    with serve_kube(KubeState()) as url:
        status, _ = asyncio.run(first_request(api_at(url)))
    assert status == 200
    assert len(made) == 1, "one TLS context per loop: made by the warm-up or else by the first request"


def test_a_pool_that_cannot_be_made_fails_the_warm_up_and_then_the_request(tmp_path: Path) -> None:
    configuration = client.Configuration(host="https://127.0.0.1:1")
    configuration.ssl_ca_cert = str(tmp_path / "missing-ca.crt")
    api = KubeApi(client.ApiClient(configuration))

    async def start_then_request() -> None:
        with pytest.raises(FileNotFoundError):
            await api.warm()
        await api.aexpect("GET", "/api/v1/namespaces/x/pods", "list pods")

    with pytest.raises(TemporaryError, match="cannot reach Kubernetes"):
        asyncio.run(start_then_request())


async def test_warm_ups_run_before_serving_and_a_failed_one_is_only_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    async def fails() -> None:
        ran.append("fails")
        raise OSError("no such CA file")

    async def works() -> None:
        ran.append("works")

    inbox = Inbox(make_engine(f"sqlite:///{tmp_path / 'orbit.db'}"))
    inbox.create_schema()
    app = create_app(inbox, None, None, warmups=[fails, works])
    with caplog.at_level(logging.WARNING, logger="bot.web"):
        async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
            assert ran == ["fails", "works"], "every warm-up ran before the app serves"
    assert "a warm-up at start failed" in caplog.text and "no such CA file" in caplog.text
    inbox.engine.dispose()


def test_the_workers_warm_github_and_every_runner_namespace() -> None:
    github = GitHubAppClient(4242, PEM.decode(), "https://api.github.com")
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:1"))
    cluster, builds = KubeCluster("orbit-runners", api), KubeCluster("orbit-builds", api)
    runners = Runners(cluster, default_classes("runner:1", "nvidia.com/gpu", 1), namespaced={"b": builds})
    assert warmups(github, runners) == [github.warm, cluster.http.warm, builds.http.warm]
    assert warmups(github, None) == [github.warm]


def test_the_github_warm_up_imports_every_rest_area_orbit_calls() -> None:
    probe = f"""
import asyncio, json, re, sys
from bot.github import GitHubAppClient
client = GitHubAppClient(4242, {PEM.decode()!r}, "https://api.github.com")
AREA = re.compile(r"githubkit_schemas[.]v\\w+[.]rest[.](\\w+)$")
def areas():
    return {{found[1] for name in list(sys.modules) if (found := AREA.match(name))}}
before = areas()
asyncio.run(client.warm())
print(json.dumps([sorted(before), sorted(areas())]))
"""
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    before, after = json.loads(answer.stdout.strip().splitlines()[-1])
    assert not set(before) & set(REST_AREAS), "githubkit imports an area on its first use only"
    assert set(REST_AREAS) <= set(after)


def test_every_rest_area_the_client_calls_is_warmed() -> None:
    called = set()
    for source in (ROOT / "bot" / "github").glob("*.py"):
        called |= set(re.findall(r"rest\.([a-z_]+)\b", source.read_text()))
    assert called - {"paginate"} == set(REST_AREAS)

"""Least privilege that works on a real cluster: the bot's RBAC is exactly what its code uses, runner
pods live apart from the App's secrets, and the network policies keep runner pods outside the cluster.

What the code uses is recorded by the Kubernetes API doubles (`tests.kube_double.ACCESSES`) as the
checks a real API server makes; what the bot is granted is rendered by kubectl from deploy/k8s: the
`single` overlay (the `ha` overlay grants the same; the build-runners component adds the runners'
grants in its own namespace).
"""

import ipaddress
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client

from bot.context import Context
from bot.github import GitHubApp
from bot.router import Router
from deploy.flow import Deployer
from deploy.kube import KubeModelCluster
from deploy.previews import Outcome, PreviewExpiry
from deploy.rollout import roll_out
from runner.classes import default_classes
from runner.jobs import Runners
from runner.kube import KubeCluster
from tests.deploy.test_deploys import (  # noqa: F401 - fixtures
    HEAD,
    REGISTRY,
    SERVICE,
    built,
    closed,
    deploy_production,
    digest,
    github,
    handle,
    kube,
    served_image,
    setup,
    states,
)
from tests.deploy.test_kustomize import COMPONENTS, compose
from tests.deploy.test_rollout import FAST, PRODUCTION
from tests.fakes import comment_payload
from tests.github_double import GitHubState
from tests.kube_double import (
    ACCESSES,
    Access,
    KubeState,
    accesses_of,
    as_deployed,
    bot_deployment,
    deployed_namespaces,
    granted,
    rbac_problems,
    render,
    serve_kube,
)
from tests.runner import test_runners as runner_flow

RUNNERS = "orbit-runners"
MANIFESTS = Path(__file__).resolve().parents[2] / "deploy/k8s"
INSTALL = MANIFESTS / "overlays/single"
PRIVATE = ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"]


def by_namespace(accesses: set[Access]) -> dict[str, dict[str, set[str]]]:
    """Return {namespace: {resource: verbs}}, the way a Role reads."""
    found: dict[str, dict[str, set[str]]] = {}
    for verb, resource, namespace in accesses:
        found.setdefault(namespace, {}).setdefault(resource, set()).add(verb)
    return found


# --- how each request becomes the RBAC check a real API server makes ---


@pytest.mark.parametrize(
    ("method", "path", "query", "content_type", "exists", "expected"),
    [
        ("GET", "/api/v1/namespaces/a/pods/p", {}, "", True, [("get", "pods", "a")]),
        ("GET", "/api/v1/namespaces/a/pods", {"labelSelector": "x=y"}, "", False, [("list", "pods", "a")]),
        ("GET", "/api/v1/namespaces/a/pods", {"watch": "true"}, "", False, [("watch", "pods", "a")]),
        ("GET", "/api/v1/namespaces/a/pods/p/log", {}, "", True, [("get", "pods/log", "a")]),
        ("POST", "/api/v1/namespaces/a/secrets", {}, "application/json", False, [("create", "secrets", "a")]),
        (
            "PUT",
            "/apis/apps/v1/namespaces/a/deployments/d",
            {},
            "",
            True,
            [("update", "deployments.apps", "a")],
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/d",
            {},
            "application/merge-patch+json",
            False,
            [("patch", "deployments.apps", "a")],
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/d",
            {"fieldManager": "orbit"},
            "application/apply-patch+yaml",
            True,
            [("patch", "deployments.apps", "a")],
        ),
        (
            "PATCH",
            "/apis/networking.k8s.io/v1/namespaces/a/ingresses/i",
            {"fieldManager": "orbit"},
            "application/apply-patch+yaml",
            False,
            [("patch", "ingresses.networking.k8s.io", "a"), ("create", "ingresses.networking.k8s.io", "a")],
        ),
        ("DELETE", "/api/v1/namespaces/a/pods/p", {}, "", True, [("delete", "pods", "a")]),
        ("DELETE", "/api/v1/namespaces/a/pods", {}, "", False, [("deletecollection", "pods", "a")]),
        (
            "GET",
            "/api/v1/namespaces/a/services/s:http/proxy/readyz",
            {},
            "",
            False,
            [("get", "services/proxy", "a")],
        ),
        (
            "POST",
            "/api/v1/namespaces/a/services/s:http/proxy/predict",
            {},
            "",
            False,
            [("create", "services/proxy", "a")],
        ),
        ("GET", "/api/v1/nodes", {}, "", False, [("list", "nodes", "")]),
        ("GET", "/api/v1/namespaces/a", {}, "", True, [("get", "namespaces", "a")]),
        ("GET", "/apis/apps/v1", {}, "", False, []),
        ("GET", "/_requests", {}, "", False, []),
    ],
)
def test_each_request_is_the_check_a_real_api_server_makes(
    method: str,
    path: str,
    query: dict[str, str],
    content_type: str,
    exists: bool,
    expected: list[tuple[str, str, str]],
) -> None:
    assert accesses_of(method, path, query, content_type, exists) == [Access(*e) for e in expected]


async def test_the_double_records_create_for_an_apply_that_creates(kube: KubeState) -> None:  # noqa: F811
    with serve_kube(kube) as url, ACCESSES.capture() as used:
        cluster = KubeModelCluster("models", client.ApiClient(client.Configuration(host=url)))
        assert (await roll_out(cluster, PRODUCTION, FAST)).ok
        first = set(used)
        used.clear()
        assert (await roll_out(cluster, PRODUCTION, FAST)).ok  # the same again: every object exists
    applied = ["deployments.apps", "services", "ingresses.networking.k8s.io"]
    applied += ["horizontalpodautoscalers.autoscaling", "poddisruptionbudgets.policy"]
    assert {Access("create", resource, "models") for resource in applied} <= first
    assert {Access("patch", resource, "models") for resource in applied} <= used
    assert not [access for access in used if access.verb == "create" and "/" not in access.resource]


# --- what the code uses is exactly what deploy/k8s grants ---


@cache
def installed() -> tuple[dict[str, Any], ...]:
    """Return the objects of the `single` overlay, rendered once."""
    return render(INSTALL)


class StaleCluster(KubeCluster):
    """The cluster as a concurrent delivery of the same job saw it: before the other created its pod."""

    async def class_pods(self, label: str) -> list[dict[str, str]]:
        return []


@pytest.fixture
def runners() -> Iterator[tuple[KubeState, Runners]]:
    state = KubeState()
    with serve_kube(state) as url:
        cluster = KubeCluster(
            RUNNERS, client.ApiClient(client.Configuration(host=url))
        )  # the default namespace
        yield state, Runners(cluster, default_classes("ghcr.io/octo-org/runner:1", "nvidia.com/gpu", 2))


async def run_runners(state: KubeState, runners: Runners) -> None:
    """Start, race, report, reconcile and stop runner pods, as the bot does."""
    job, handle_job = runner_flow.job, runner_flow.handle
    fake = runner_flow.github_with(job(555), job(556))
    await handle_job(runners, fake, "queued", job(555))  # list the class's pods, create pod and secret
    cluster = cast(KubeCluster, runners.cluster)
    racing = Runners(StaleCluster(cluster.namespace, cluster.http.api), runners.classes)
    await handle_job(racing, fake, "queued", job(555))  # the pod exists: create answers 409, it is read
    state.add_event("orbit-runner-555", "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.")
    later = datetime.now(UTC) + timedelta(minutes=15)
    await fake.create_check_run(runner_flow.REPO, runner_flow.SHA, "orbit/train", "Training queued", "")
    pending = await runner_flow.reconciler(runners, fake, now=later).run_once()  # events; 556 started
    assert (pending.reported_pending, pending.started) == (["orbit-runner-555"], [556])
    fake.jobs[555] = job(555, status="completed")
    await handle_job(runners, fake, "completed", fake.jobs[555])  # pod and secret deleted
    fake.jobs[556] = job(556, status="completed")
    finished = await runner_flow.reconciler(runners, fake).run_once()
    assert finished.deleted == ["orbit-runner-556"]
    assert state.of("pods") == {} and state.of("secrets") == {}


async def run_deploys(setup: tuple[Context, Router], github: GitHubState, kube: KubeState) -> None:  # noqa: F811
    """Deploy production twice, fail a third (crash loop, restored), preview and tear down, roll back."""
    await deploy_production(setup, github, 1, pull=6)  # every object created by server-side apply
    await deploy_production(setup, github, 2, pull=7)  # every object updated
    kube.behaviour[f"{REGISTRY}/{SERVICE}@{digest(3)}"] = "crashloop"
    failed = await deploy_production(setup, github, 3, pull=8)  # pods listed, the previous one restored
    assert states(github, failed)[-1] == "failure"
    await handle(setup, "issue_comment", comment_payload("/deploy", number=7))
    preview = github.reports.deployments[0]["id"]
    image = {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(4)}
    await handle(setup, "workflow_run", built(github, preview, "pr-7", HEAD, 700, image))
    assert ("deployments", "models", f"{SERVICE}-pr-7") in kube.objects
    await handle(setup, "pull_request", closed(7, merged=False))  # the preview torn down
    assert ("deployments", "models", f"{SERVICE}-pr-7") not in kube.objects
    rollback = comment_payload("/rollback", number=7)
    rollback["comment"]["id"] = 2007  # another comment than the /deploy one on the same PR
    await handle(setup, "issue_comment", rollback)
    assert served_image(kube).endswith(digest(1)), github.comments[-1]["body"]


async def run_expiry() -> None:
    """Look for expired previews: the pass lists Deployments (a teardown is `run_deploys`' own)."""
    with serve_kube(KubeState()) as url:
        cluster = KubeModelCluster("models", client.ApiClient(client.Configuration(host=url)))
        deployer = Deployer(cluster, "models", "", REGISTRY, "models.example.com")
        assert await PreviewExpiry(deployer, cast(GitHubApp, None), lambda: []).run_once() == Outcome()


async def test_the_code_uses_exactly_what_the_rendered_rbac_grants(
    runners: tuple[KubeState, Runners],
    setup: tuple[Context, Router],  # noqa: F811
    github: GitHubState,  # noqa: F811
    kube: KubeState,  # noqa: F811
) -> None:
    with ACCESSES.capture() as used:
        await run_runners(*runners)
        await run_deploys(setup, github, kube)
        await run_expiry()
    objects = installed()
    deployed, grants = as_deployed(used, deployed_namespaces(objects)), granted(objects)
    assert by_namespace(deployed - grants) == {}, "used but not granted: a real API server answers 403"
    assert by_namespace(grants - deployed) == {}, "granted but not used: not least privilege"
    assert by_namespace(grants) == {
        RUNNERS: {
            "pods": {"create", "get", "list", "delete"},
            "secrets": {"create", "delete"},
            "events": {"list"},
        },
        "models": {  # each object is read first: whose model it serves (another's is never touched)
            "deployments.apps": {"get", "list", "create", "patch", "delete"},
            "services": {"get", "create", "patch", "delete"},
            "ingresses.networking.k8s.io": {"get", "create", "patch", "delete"},
            "horizontalpodautoscalers.autoscaling": {"get", "create", "patch"},
            "poddisruptionbudgets.policy": {"get", "create", "patch"},
            "pods": {"list"},
            "services/proxy": {"get", "create"},
        },
    }


def edited_role(tmp_path: Path, role: str, edit: Callable[[list[dict[str, Any]]], None]) -> Path:
    """Return the `single` overlay of a copy of deploy/k8s in which `edit` changed the rules of `role`."""
    folder = Path(shutil.copytree(MANIFESTS, tmp_path / "k8s"))
    manifest = yaml.safe_load((folder / role).read_text())
    edit(manifest["rules"])
    (folder / role).write_text(yaml.safe_dump(manifest))
    return folder / INSTALL.relative_to(MANIFESTS)


def test_the_check_names_an_apply_the_role_does_not_allow_to_create(tmp_path: Path) -> None:
    def without_create(rules: list[dict[str, Any]]) -> None:
        for rule in rules:
            rule["verbs"] = [verb for verb in rule["verbs"] if verb != "create"]

    folder = edited_role(tmp_path, "base/models/role.yaml", without_create)
    used = {
        Access("create", "deployments.apps", "models"): "tests/x.py::test_deploy",
        Access("patch", "deployments.apps", "models"): "tests/x.py::test_deploy",
    }
    missing, unused = rbac_problems(used, render(folder), all_ran=True)
    assert missing == ["create deployments.apps in models  (first by tests/x.py::test_deploy)"]
    assert "patch services in models" in unused and "patch deployments.apps in models" not in unused
    assert rbac_problems(used, render(folder), all_ran=False)[1] == []


def test_the_check_refuses_a_wildcard(tmp_path: Path) -> None:
    def everything(rules: list[dict[str, Any]]) -> None:
        rules[0]["verbs"] = ["*"]

    folder = edited_role(tmp_path, "base/runners/role.yaml", everything)
    with pytest.raises(ValueError, match="grants '\\*'"):
        granted(render(folder))


# --- where things live: runner pods apart from the App's secrets ---


def objects_in(namespace: str) -> list[dict[str, Any]]:
    return [o for o in installed() if o["metadata"].get("namespace") == namespace]


def test_runner_pods_run_apart_from_the_apps_secrets() -> None:
    deployment = bot_deployment(installed())
    bot_namespace = deployment["metadata"]["namespace"]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ORBIT_KUBE_NAMESPACE"] == {"name": "ORBIT_KUBE_NAMESPACE", "value": RUNNERS}
    assert bot_namespace != RUNNERS
    (namespace,) = [o for o in installed() if o["kind"] == "Namespace" and o["metadata"]["name"] == RUNNERS]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert sorted(o["kind"] for o in objects_in(RUNNERS)) == ["NetworkPolicy", "Role", "RoleBinding"]
    # the App's secrets are mounted in the bot's namespace (a pod reads only its own namespace's)
    spec = deployment["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    secrets |= {e["secretRef"]["name"] for e in spec["containers"][0].get("envFrom", []) if "secretRef" in e}
    secrets |= {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in env.values()
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secrets == {"orbit-github-app"}
    grants = by_namespace(granted(installed()))
    assert bot_namespace not in grants, "the bot needs nothing of the API where the App's secrets are"
    assert grants[RUNNERS]["secrets"] == {"create", "delete"}, "JIT secrets are written, never read back"


# --- the network: runner pods reach DNS and HTTPS outside the cluster, nothing else ---


def network_policy(namespace: str) -> dict[str, Any]:
    (policy,) = [o for o in objects_in(namespace) if o["kind"] == "NetworkPolicy"]
    return policy


def test_runner_pods_reach_only_dns_and_https_outside_the_cluster() -> None:
    policy = network_policy(RUNNERS)["spec"]
    assert policy["podSelector"] == {}, "every pod of the namespace, whatever its labels"
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert policy.get("ingress") in (None, []), "nothing reaches a runner pod"
    dns, https = policy["egress"]
    assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [(53, "TCP"), (53, "UDP")]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert https["ports"] == [{"port": 443, "protocol": "TCP"}]
    (block,) = https["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
    configured = yaml.safe_load((MANIFESTS / "base/runners/cluster-network.yaml").read_text())["data"]
    excepted = block["ipBlock"]["except"]
    assert excepted == [*PRIVATE, configured["podCIDR"], configured["serviceCIDR"]]
    for cidr in excepted:
        assert ipaddress.IPv4Network(cidr).subnet_of(ipaddress.IPv4Network("0.0.0.0/0")), cidr


def test_the_bot_reaches_dns_https_the_api_and_in_ha_postgresql_and_takes_webhooks() -> None:
    ha = {o["metadata"]["name"]: o for o in render(MANIFESTS / "overlays/ha") if o["kind"] == "NetworkPolicy"}
    dns, postgresql = {(53, "UDP"), (53, "TCP")}, {(5432, "TCP")}
    base = dns | {(443, "TCP"), (6443, "TCP")}
    for policy, ports in (
        (network_policy("orbit")["spec"], base),
        (ha["orbit-worker"]["spec"], base | postgresql),
        (ha["orbit"]["spec"], dns | postgresql),  # the ingest: no GitHub, no Kubernetes API
    ):
        assert {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]} == ports
        assert policy["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}]}]


# --- the other installs grant the same; the build runners' namespace, what runner management uses ---


def test_ha_and_the_components_grant_the_same_and_the_runners_grants_in_the_build_namespace(
    tmp_path: Path,
) -> None:
    single = granted(installed())
    assert granted(render(MANIFESTS / "overlays/ha")) == single
    everything = granted(render(compose(tmp_path / "all", "ha", COMPONENTS)))
    builds = {access._replace(namespace="orbit-builds") for access in single if access.namespace == RUNNERS}
    assert everything == single | builds

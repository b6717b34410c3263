"""Previews expire after `deploy.preview_ttl_hours`, through the HTTP doubles of GitHub and Kubernetes:
the expired one is torn down with one comment, the young one, production and what orbit does not manage
stay, a closed PR's preview goes, and a second pass does nothing new."""

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from bot import commands
from bot.context import Context
from bot.errors import TemporaryError
from bot.github import GitHubAppClient
from bot.router import Router
from deploy.flow import Deployer, DeployPreview, Rollback, router_for
from deploy.kube import KubeModelCluster
from deploy.manifests import DEPLOYED_AT
from deploy.previews import Outcome, PreviewExpiry, preview_of
from deploy.rollout import Timing
from tests.bot.test_github_client import PEM
from tests.deploy.test_deploys import (
    HEAD,
    REGISTRY,
    SERVICE,
    built,
    deploy_production,
    digest,
    handle,
    states,
)
from tests.fakes import comment_payload, memory_inbox
from tests.github_double import GitHubState, default_pull, serve_github
from tests.kube_double import KubeState, serve_kube

INSTALLED = [(42, "octo-org/model")]
EXPIRED_MARK = "expired:"


@dataclass
class World:
    """The bot's deploy handlers and an expiry pass over the same doubles."""

    setup: tuple[Context, Router]
    github: GitHubState
    kube: KubeState
    deployer: Deployer
    app: GitHubAppClient

    async def expire(
        self, hours: float, installed: list[tuple[int, str]] = INSTALLED, deployer: Deployer | None = None
    ) -> Outcome:
        """Run one pass as if `hours` had passed since now."""
        later = datetime.now(UTC) + timedelta(hours=hours)
        expiry = PreviewExpiry(deployer or self.deployer, self.app, lambda: installed, lambda: later)
        return await expiry.run_once()

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.kube.objects.get(("deployments", "models", name))

    def expired_comments(self) -> list[dict[str, Any]]:
        return [c for c in self.github.comments if "expired" in c["body"]]


@pytest.fixture
def world() -> Iterator[World]:
    github, kube = GitHubState(), KubeState()
    with serve_github(github) as github_url, serve_kube(kube) as kube_url:
        cluster = KubeModelCluster("models", client.ApiClient(client.Configuration(host=kube_url)))
        deployer = Deployer(cluster, "models", "", REGISTRY, "models.example.com", timing=Timing(0.3, 0.02))
        app = GitHubAppClient(4242, PEM.decode(), github_url)
        features = {"deploy": DeployPreview(), "rollback": Rollback(deployer)}
        router = Router.compose([router_for(deployer), commands.router])
        context = Context(app.for_installation(42), memory_inbox(), features)  # type: ignore[arg-type]
        yield World((context, router), github, kube, deployer, app)


async def deploy_preview(world: World, pull: int = 7, n: int = 5) -> int:
    """`/deploy` on an open PR, then its build completes: the preview serves; return its deployment."""
    comment = comment_payload("/deploy", number=pull)
    comment["comment"]["id"] = 3000 + n  # each `/deploy` a comment of its own
    await handle(world.setup, "issue_comment", comment)
    [deployment, *_] = [d for d in world.github.reports.deployments if d["environment"] == f"pr-{pull}"]
    image = {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(n)}
    build = built(world.github, deployment["id"], f"pr-{pull}", HEAD, 600 + n, image, pull=pull)
    await handle(world.setup, "workflow_run", build)
    assert world.deployment(f"{SERVICE}-pr-{pull}") is not None, world.github.comments[-1]["body"]
    return int(deployment["id"])


def objects_of(world: World, name: str) -> list[tuple[str, str, str]]:
    return [key for key in world.kube.objects if key[0] != "pods" and key[2] == name]


async def test_an_expired_preview_is_torn_down_with_one_comment(world: World) -> None:
    deployment = await deploy_preview(world)
    outcome = await world.expire(hours=73)
    assert outcome.expired == [f"{SERVICE}-pr-7"]
    assert objects_of(world, f"{SERVICE}-pr-7") == [], "Deployment, Service and Ingress deleted"
    assert states(world.github, deployment)[-1] == "inactive"
    status = world.github.reports.deployment_statuses[deployment][0]
    assert status["description"] == "the preview expired after 72 hours"
    [note] = world.expired_comments()
    assert note["number"] == 7
    assert "previews live 72 hours" in note["body"] and "`/deploy` to bring it back" in note["body"]


async def test_a_young_preview_is_kept(world: World) -> None:
    deployment = await deploy_preview(world)
    outcome = await world.expire(hours=71)
    assert (outcome.kept, outcome.expired) == ([f"{SERVICE}-pr-7"], [])
    assert len(objects_of(world, f"{SERVICE}-pr-7")) == 3
    assert states(world.github, deployment)[-1] == "success"
    assert world.expired_comments() == []


async def test_a_second_pass_does_nothing_new(world: World) -> None:
    deployment = await deploy_preview(world)
    await world.expire(hours=73)
    requests, statuses = len(world.kube.requests), len(world.github.reports.deployment_statuses[deployment])
    again = await world.expire(hours=74)
    assert again == Outcome()
    assert [verb for _, verb, _ in world.kube.requests[requests:]] == ["LIST"], "one list, no delete"
    assert len(world.github.reports.deployment_statuses[deployment]) == statuses
    assert len(world.expired_comments()) == 1


class DeletesFail(KubeModelCluster):
    """The cluster as an API server that fails every delete: a pass stops after its comment."""

    def delete(self, kind: str, name: str) -> None:
        raise TemporaryError(f"Kubernetes answered 500 to delete {kind} {name}")


async def test_a_pass_interrupted_after_the_comment_finishes_without_saying_it_twice(world: World) -> None:
    await deploy_preview(world)
    cluster = world.deployer.cluster
    assert isinstance(cluster, KubeModelCluster)
    failing = replace(world.deployer, cluster=DeletesFail("models", cluster.http.api))
    interrupted = await world.expire(hours=73, deployer=failing)
    assert interrupted.failed == [f"{SERVICE}-pr-7"] and len(world.expired_comments()) == 1
    finished = await world.expire(hours=73)
    assert finished.expired == [f"{SERVICE}-pr-7"] and objects_of(world, f"{SERVICE}-pr-7") == []
    assert len(world.expired_comments()) == 1


async def test_redeploying_restarts_the_time_to_live(world: World) -> None:
    await deploy_preview(world, n=5)
    found = world.deployment(f"{SERVICE}-pr-7")
    assert found is not None
    long_ago = "2020-01-01T00:00:00Z"  # deployed, and created, long ago
    found["metadata"]["creationTimestamp"] = found["metadata"]["annotations"][DEPLOYED_AT] = long_ago
    await deploy_preview(world, n=6)  # a new `/deploy` over it: another 72 hours
    assert (await world.expire(hours=71)).kept == [f"{SERVICE}-pr-7"]
    assert (await world.expire(hours=73)).expired == [f"{SERVICE}-pr-7"]
    await deploy_preview(world, n=7)  # `/deploy` brings it back after it expired
    assert (await world.expire(hours=71)).kept == [f"{SERVICE}-pr-7"]
    assert len(world.expired_comments()) == 1


async def test_a_deploy_under_way_is_left_to_its_build(world: World) -> None:
    serving = await deploy_preview(world, n=5)
    found = world.deployment(f"{SERVICE}-pr-7")
    assert found is not None
    found["metadata"]["annotations"][DEPLOYED_AT] = "2020-01-01T00:00:00Z"
    again = comment_payload("/deploy")
    again["comment"]["id"] = 4000  # a new `/deploy`, whose image is still being built
    await handle(world.setup, "issue_comment", again)
    building = world.github.reports.deployments[0]["id"]
    assert (await world.expire(hours=0)).expired == [f"{SERVICE}-pr-7"]
    assert states(world.github, serving)[-1] == "inactive"
    assert states(world.github, building) == ["queued"], "not marked inactive before it even served"


async def test_a_repository_with_a_shorter_time_to_live_expires_sooner(world: World) -> None:
    world.github.files[(".github/orbit.yml", "main")] = "deploy:\n  preview_ttl_hours: 1\n"
    await deploy_preview(world)
    outcome = await world.expire(hours=1.5)
    assert outcome.expired == [f"{SERVICE}-pr-7"]
    [note] = world.expired_comments()
    assert "previews live 1 hours" in note["body"]


async def test_an_invalid_configuration_means_the_default_time_to_live(world: World) -> None:
    world.github.files[(".github/orbit.yml", "main")] = "deploy:\n  preview_ttl_hours: soon\n"
    await deploy_preview(world)
    assert (await world.expire(hours=2)).kept == [f"{SERVICE}-pr-7"]
    assert (await world.expire(hours=73)).expired == [f"{SERVICE}-pr-7"]


async def test_production_is_never_touched(world: World) -> None:
    production = await deploy_production(world.setup, world.github, 1, pull=6)
    applied = len(world.kube.applied)
    outcome = await world.expire(hours=24 * 365)
    assert outcome == Outcome()
    assert len(objects_of(world, SERVICE)) == 5, "Deployment, Service, Ingress, autoscaler, budget"
    assert states(world.github, production)[-1] == "success"
    assert len(world.kube.applied) == applied and world.expired_comments() == []


async def test_a_closed_prs_preview_goes_without_a_comment(world: World) -> None:
    deployment = await deploy_preview(world, pull=8)
    world.github.reports.pulls[8] = {**default_pull(8), "state": "closed"}
    outcome = await world.expire(hours=1)  # young, but its PR closed without orbit hearing of it
    assert outcome.closed == [f"{SERVICE}-pr-8"]
    assert objects_of(world, f"{SERVICE}-pr-8") == []
    [status, *_] = world.github.reports.deployment_statuses[deployment]
    assert status["description"] == "the pull request was closed"
    assert world.expired_comments() == []


async def test_what_orbit_does_not_manage_is_never_touched(world: World) -> None:
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{SERVICE}-pr-9",
            "namespace": "models",
            "labels": {"orbit.dev/environment": "pr-9", "app.kubernetes.io/name": SERVICE},
            "annotations": {"orbit.dev/repository": "octo-org/model", DEPLOYED_AT: "2020-01-01T00:00:00Z"},
        },
        "spec": {},
    }
    world.kube.objects[("deployments", "models", f"{SERVICE}-pr-9")] = foreign
    outcome = await world.expire(hours=24 * 365)
    assert outcome == Outcome()
    assert world.deployment(f"{SERVICE}-pr-9") is foreign


async def test_a_repository_the_app_left_is_left_alone(world: World) -> None:
    await deploy_preview(world)
    outcome = await world.expire(hours=73, installed=[(42, "octo-org/other")])
    assert outcome.skipped == [f"{SERVICE}-pr-7"]
    assert len(objects_of(world, f"{SERVICE}-pr-7")) == 3


@pytest.mark.parametrize(
    ("labels", "annotations", "name"),
    [
        ({"orbit.dev/environment": "production"}, {}, SERVICE),
        ({"orbit.dev/environment": "pr-007"}, {}, f"{SERVICE}-pr-007"),
        ({"orbit.dev/environment": "pr-7"}, {}, "someone-else-pr-7"),
        ({"orbit.dev/environment": "pr-7"}, {"orbit.dev/repository": "no-owner"}, f"{SERVICE}-pr-7"),
        ({"orbit.dev/environment": "pr-7", "app.kubernetes.io/managed-by": "helm"}, {}, f"{SERVICE}-pr-7"),
    ],
)
def test_only_a_preview_orbit_made_is_a_candidate(
    labels: dict[str, str], annotations: dict[str, str], name: str
) -> None:
    base_labels = {"app.kubernetes.io/managed-by": "orbit", "app.kubernetes.io/name": SERVICE}
    metadata = {
        "name": name,
        "labels": {**base_labels, **labels},
        "annotations": {"orbit.dev/repository": "octo-org/model", **annotations},
    }
    assert preview_of(metadata) is None
    good = {**metadata, "name": f"{SERVICE}-pr-7", "labels": {**base_labels, "orbit.dev/environment": "pr-7"}}
    good["annotations"] = {"orbit.dev/repository": "octo-org/model", "orbit.dev/deployment-id": "3"}
    found = preview_of({**good, "creationTimestamp": "2026-05-01T12:00:00Z"})
    assert found is not None and (found.pull, found.deployment_id) == (7, 3)
    assert found.deployed_at == datetime(2026, 5, 1, 12, tzinfo=UTC), "creationTimestamp when no annotation"

"""Each installed repository's model lives under names of its own: valid names and hosts for any
repository name, two repositories deployed side by side in the Kubernetes double, a closed PR or a
rollback of one touching nothing of the other, and a configured single name that a second repository
cannot take over."""

import re
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client

from bot import app
from bot.context import Context
from bot.events import Repo
from bot.router import Router
from bot.settings import Settings, SettingsError
from deploy.flow import Deployer
from deploy.kube import KubeModelCluster
from deploy.manifests import Target, manifests, repository_label, service_name, service_override_problem
from deploy.rollout import roll_out, tear_down
from tests.deploy.test_deploys import (  # noqa: F401 - fixtures
    HEAD,
    REGISTRY,
    built,
    closed,
    digest,
    github,
    handle,
    kube,
    setup,
)
from tests.deploy.test_rollout import FAST
from tests.fakes import comment_payload
from tests.github_double import GitHubState
from tests.kube_double import KubeState, serve_kube

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # a Service's name
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # a host's label
LABEL_VALUE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LONG_OWNER = "some-very-long-organisation-name-that-goes-on"
LONG_NAME = "deep-learning-" * 6 + "x"

# repository -> (object name, repository label): a slug of the name, then 16 hex digits (64 bits) of a
# hash of owner/name, too many to search out a name that takes another repository's objects and host
NAMES = {
    "octo-org/model": ("model-b18167c7cc272d64", "octo-org.model"),
    "other-org/model": ("model-f4fea8869b7c3b48", "other-org.model"),
    "octo-org/Model": ("model-b18167c7cc272d64", "octo-org.model"),  # GitHub's names ignore case
    "octo-org/celestial-bodies-classifier": (
        "celestial-bodies-classifier-72085db333996d3d",
        "octo-org.celestial-bodies-classifier",
    ),
    "o/3d-Model_v2.0": ("m-3d-model-v2-0-54f143bbf2579973", "o.3d-model_v2.0"),  # starts with a letter
    "o/___": ("m-eb6aca0bcbb0e0e4", "o-eb6aca0bcbb0e0e4"),  # nothing of the name is left
    "o/.github": ("github-2de6b076567b70ce", "o..github"),
    "o/a--b..c": ("a-b-c-fff27106fe8af3c9", "o.a--b..c"),
    "o/" + "x" * 28: ("x" * 28 + "-beb080cecbd74b8f", "o." + "x" * 28),  # the longest name kept whole
    "o/" + "x" * 29: ("x" * 28 + "-e1de068cef8b975d", "o." + "x" * 29),  # cut to the same slug, another hash
    "o/" + "x" * 36: ("x" * 28 + "-dcf58504c0cb1898", "o." + "x" * 36),
    "o/" + "x" * 100: ("x" * 28 + "-b2f95e796449ac87", "o." + "x" * 44 + "-b2f95e796449ac87"),
    f"{LONG_OWNER}/{LONG_NAME}": (
        "deep-learning-deep-learning-b140e8b8962b0577",
        "some-very-long-organisation-name-that-goes-on-b140e8b8962b0577",
    ),
}
DOMAIN = "models.example.com"
LARGEST_PULL = 9_999_999_999  # GitHub's numbers are 32-bit: ten digits at most


@pytest.mark.parametrize("repository", NAMES)
def test_names_and_hosts_are_valid_dns_labels_and_distinct(repository: str) -> None:
    name, label = NAMES[repository]
    assert (service_name(repository), repository_label(repository)) == (name, label)
    preview = Deployer(None, "models", "", REGISTRY, DOMAIN).target(  # type: ignore[arg-type]
        Repo(*repository.split("/")), f"pr-{LARGEST_PULL}", "i", "s", 1
    )
    for obj in manifests(preview):
        assert DNS_1035.match(obj["metadata"]["name"]) and len(obj["metadata"]["name"]) <= 63
        assert LABEL_VALUE.match(obj["metadata"]["labels"]["orbit.dev/repository"])
        assert obj["metadata"]["annotations"]["orbit.dev/repository"] == repository
    [ingress] = [obj for obj in manifests(preview) if obj["kind"] == "Ingress"]
    assert ingress["spec"]["tls"][0]["secretName"] == f"{name}-pr-{LARGEST_PULL}-tls"
    assert len(ingress["spec"]["tls"][0]["secretName"]) <= 63
    assert preview.host == f"pr-{LARGEST_PULL}.{name}.{DOMAIN}"
    assert all(DNS_1123.match(part) and len(part) <= 63 for part in preview.host.split("."))
    assert replace(preview, environment="production").host == f"{name}.{DOMAIN}"


def test_every_repository_of_the_corpus_has_its_own_name() -> None:
    distinct = {repository.lower() for repository in NAMES}
    assert len({service_name(repository) for repository in NAMES}) == len(distinct)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("classifier", None),
        ("Classifier", "must be a DNS label"),
        ("3d", "must be a DNS label"),
        ("a" * 46, "must be at most 45 characters"),
    ],
)
def test_a_configured_service_name_must_fit_a_previews_names(name: str, problem: str | None) -> None:
    found = service_override_problem(name)
    assert found is None if problem is None else (found or "").startswith(problem), found


def settings(**values: Any) -> Settings:
    base = {"github_app_id": 1, "github_private_key": "k", "webhook_secret": "s"}
    return Settings(**{**base, "registry": REGISTRY, "public_domain": DOMAIN, **values})


def test_the_deployer_takes_its_options_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "KubeModelCluster", lambda namespace: f"cluster of {namespace}")
    deployer = app.deployer_from(
        settings(image_pull_secret="registry-credentials", model_api_key_secret="model-api-key")
    )
    assert deployer is not None
    assert (deployer.service_override, deployer.pull_secret, deployer.api_key_secret) == (
        "",
        "registry-credentials",
        "model-api-key",
    )
    assert deployer.service(Repo("octo-org", "model")) == "model-b18167c7cc272d64"
    with pytest.raises(SettingsError, match="ORBIT_MODEL_SERVICE must be at most 45 characters"):
        app.deployer_from(settings(model_service="a" * 46))


# --- two repositories in one cluster ---

OCTO, OTHER = "octo-org/model", "other-org/model"


def of(repository: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Return the payload as the repository's own delivery."""
    owner, name = repository.split("/")
    payload["repository"] = {**payload["repository"], "full_name": repository, "name": name}
    payload["repository"]["owner"] = {"login": owner}
    return payload


async def merge(wired: tuple[Context, Router], hub: GitHubState, repository: str, pull: int, n: int) -> None:
    """Merge the repository's PR and complete its build with image digest `n`."""
    await handle(wired, "pull_request", of(repository, closed(pull)))
    deployment = hub.reports.deployments[0]["id"]
    image = {"image": f"{REGISTRY}/model", "digest": digest(n)}
    completed = built(hub, deployment, "production", f"{pull:040x}", 0, image, pull=pull)
    await handle(wired, "workflow_run", of(repository, completed))


async def preview(wired: tuple[Context, Router], hub: GitHubState, repository: str, comment: int) -> None:
    """`/deploy` PR 7 of the repository and complete its build."""
    payload = of(repository, comment_payload("/deploy"))
    payload["comment"]["id"] = comment
    await handle(wired, "issue_comment", payload)
    deployment = hub.reports.deployments[0]["id"]
    image = {"image": f"{REGISTRY}/model", "digest": digest(comment % 16)}
    await handle(wired, "workflow_run", of(repository, built(hub, deployment, "pr-7", HEAD, 0, image)))


async def rollback(
    wired: tuple[Context, Router], hub: GitHubState, repository: str, pull: int, comment: int
) -> str:
    payload = of(repository, comment_payload("/rollback", number=pull))
    payload["comment"]["id"] = comment
    await handle(wired, "issue_comment", payload)
    return str(hub.comments[-1]["body"])


def names(state: KubeState, kind: str = "deployments") -> set[str]:
    return set(state.of(kind, "models"))


def image_of(state: KubeState, name: str) -> str:
    return str(
        state.objects[("deployments", "models", name)]["spec"]["template"]["spec"]["containers"][0]["image"]
    )


async def test_two_repositories_keep_their_own_objects_and_closing_a_pr_of_one_spares_the_other(
    setup: tuple[Context, Router],  # noqa: F811
    github: GitHubState,  # noqa: F811
    kube: KubeState,  # noqa: F811
) -> None:
    octo, other = service_name(OCTO), service_name(OTHER)
    await merge(setup, github, OCTO, 5, 1)
    await merge(setup, github, OTHER, 8, 2)
    await preview(setup, github, OCTO, 3001)
    await preview(setup, github, OTHER, 3002)
    everything = {octo, other, f"{octo}-pr-7", f"{other}-pr-7"}
    for kind in ("deployments", "services", "ingresses"):
        assert names(kube, kind) == everything, kind
    assert image_of(kube, octo).endswith(digest(1)) and image_of(kube, other).endswith(digest(2))
    labelled = kube.objects[("services", "models", other)]["metadata"]["labels"]
    assert labelled["orbit.dev/repository"] == "other-org.model"
    hosts = {i["spec"]["rules"][0]["host"] for i in kube.of("ingresses", "models").values()}
    assert hosts == {
        f"{octo}.{DOMAIN}",
        f"{other}.{DOMAIN}",
        f"pr-7.{octo}.{DOMAIN}",
        f"pr-7.{other}.{DOMAIN}",
    }

    await handle(setup, "pull_request", of(OCTO, closed(7, merged=False)))
    for kind in ("deployments", "services", "ingresses"):
        assert names(kube, kind) == {octo, other, f"{other}-pr-7"}, kind
    assert [
        p for p in kube.of("pods", "models").values() if p["metadata"]["name"].startswith(f"{other}-pr-7")
    ]


async def test_a_rollback_reads_and_restores_its_own_repositorys_history(
    setup: tuple[Context, Router],  # noqa: F811
    github: GitHubState,  # noqa: F811
    kube: KubeState,  # noqa: F811
) -> None:
    octo, other = service_name(OCTO), service_name(OTHER)
    await merge(setup, github, OCTO, 5, 1)
    await merge(setup, github, OCTO, 6, 2)
    await merge(setup, github, OTHER, 8, 3)
    said = await rollback(setup, github, OTHER, 6, 4001)
    assert "PR #6 is not among production's recorded rollouts" in said, "octo-org's PR 6 is not other-org's"
    said = await rollback(setup, github, OTHER, 8, 4002)
    assert "No rollout before PR #8's is on record" in said
    said = await rollback(setup, github, OCTO, 6, 4003)
    assert "the model from before PR #6" in said
    assert image_of(kube, octo).endswith(digest(1)) and image_of(kube, other).endswith(digest(3))


# --- one configured name: a single-repository install ---


@pytest.fixture
def shared() -> Iterator[tuple[KubeState, Deployer]]:
    state = KubeState()
    with serve_kube(state) as url:
        cluster = KubeModelCluster("models", client.ApiClient(client.Configuration(host=url)))
        yield state, Deployer(cluster, "models", "classifier", REGISTRY, DOMAIN, timing=FAST)


async def test_a_configured_name_serves_one_repository_and_a_second_is_refused(
    shared: tuple[KubeState, Deployer],
) -> None:
    state, deployer = shared
    image = f"{REGISTRY}/model@{digest(1)}"
    octo, other = Repo("octo-org", "model"), Repo("other-org", "model")
    assert (
        await roll_out(deployer.cluster, deployer.target(octo, "production", image, "a" * 40, 1), FAST)
    ).ok
    assert (await roll_out(deployer.cluster, deployer.target(octo, "pr-7", image, "a" * 40, 2), FAST)).ok
    applied = len(state.applied)
    taken = await roll_out(deployer.cluster, deployer.target(other, "production", image, "b" * 40, 3), FAST)
    assert (taken.ok, taken.restored) == (False, None)
    assert taken.reason == (
        "the Deployment classifier serves octo-org/model's model;"
        " two repositories cannot share a service name"
    )
    assert await tear_down(deployer.cluster, deployer.target(other, "pr-7", "", "", 0)) is False
    assert len(state.applied) == applied and "classifier-pr-7" in names(state)
    assert await tear_down(deployer.cluster, deployer.target(octo, "pr-7", "", "", 0)) is True
    assert names(state) == {"classifier"}


# --- another repository's objects under the same name: checked one by one, not only the Deployment ---

PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "Ingress": "ingresses",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
}


def store_as_others(state: KubeState, target: Target, kinds: set[str]) -> dict[tuple[str, str, str], Any]:
    """Store `other-org/model`'s objects of the kinds under the target's names (a colliding name)."""
    for manifest in manifests(replace(target, repository=OTHER)):
        if manifest["kind"] in kinds:
            state.objects[(PLURALS[manifest["kind"]], "models", manifest["metadata"]["name"])] = manifest
    return deepcopy(state.objects)


@pytest.fixture
def cluster() -> Iterator[tuple[KubeState, KubeModelCluster]]:
    state = KubeState()
    with serve_kube(state) as url:
        yield state, KubeModelCluster("models", client.ApiClient(client.Configuration(host=url)))


def target_of(repository: str, environment: str) -> Target:
    owner, name = repository.split("/")
    deployer = Deployer(None, "models", "", REGISTRY, DOMAIN)  # type: ignore[arg-type]
    return deployer.target(Repo(owner, name), environment, f"{REGISTRY}/model@{digest(1)}", "a" * 40, 1)


async def test_a_teardown_spares_another_repositorys_service_and_ingress_without_a_deployment(
    cluster: tuple[KubeState, KubeModelCluster],
) -> None:
    """The reviewer's attack (F6): octo-org's name collides with other-org's, whose preview has a Service
    and an Ingress but no Deployment (yet, or any more). Closing octo-org's PR deleted them; now nothing
    of the name is deleted."""
    state, models = cluster
    preview = target_of(OCTO, "pr-7")
    before = store_as_others(state, preview, {"Service", "Ingress"})
    assert await tear_down(models, preview) is False
    assert state.objects == before
    assert not [request for request in state.requests if request[1] == "DELETE"]


@pytest.mark.parametrize("kind", ["Service", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget"])
async def test_a_rollout_never_applies_over_another_repositorys_object(
    cluster: tuple[KubeState, KubeModelCluster], kind: str
) -> None:
    """The reviewer's attack (F6): with no Deployment of the name, octo-org's rollout applied its Service,
    Ingress, autoscaler and disruption budget over other-org's. Now any one of them refuses it all."""
    state, models = cluster
    production = target_of(OCTO, "production")
    before = store_as_others(state, production, {kind})
    outcome = await roll_out(models, production, FAST)
    assert (outcome.ok, outcome.restored) == (False, None)
    assert outcome.reason == (
        f"the {kind} {production.name} serves other-org/model's model;"
        " two repositories cannot share a service name"
    )
    assert state.applied == [] and state.objects == before


async def test_a_teardown_deletes_its_own_objects_that_outlive_the_deployment(
    cluster: tuple[KubeState, KubeModelCluster],
) -> None:
    state, models = cluster
    preview = target_of(OCTO, "pr-7")
    assert (await roll_out(models, preview, FAST)).ok
    del state.objects[("deployments", "models", preview.name)]
    assert await tear_down(models, preview) is True
    assert not [key for key in state.objects if key[0] in PLURALS.values()]

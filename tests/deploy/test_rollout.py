"""Rolling the served model out against the Kubernetes API double with the real client: the applied
objects, success, a timeout, a crash loop, a failed smoke test with the rollback verified, previews,
the autoscaler's replicas kept, a private registry's pull secret, an endpoint that asks for a key."""

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client
from kubernetes_validate import validate

from bot.errors import TemporaryError
from bot.events import Repo
from deploy.flow import Deployer
from deploy.kube import KubeModelCluster
from deploy.manifests import Target, deployment, manifests
from deploy.rollout import Timing, roll_out, tear_down
from tests.kube_apply_double import scale
from tests.kube_double import KubeState, serve_kube

DIGEST = "registry.example.com/celestial@sha256:" + "1" * 64
NEXT = "registry.example.com/celestial@sha256:" + "2" * 64
FAST = Timing(deadline_seconds=0.5, poll_seconds=0.02)
PRODUCTION = Target(
    service="celestial-bodies-classifier",
    repository="octo-org/model",
    environment="production",
    namespace="models",
    image=DIGEST,
    sha="a" * 40,
    deployment_id=11,
    domain="models.example.com",
    tls_issuer="letsencrypt",
    ingress_class="nginx",
)


@pytest.fixture
def state() -> KubeState:
    return KubeState()


@pytest.fixture
def cluster(state: KubeState) -> Iterator[KubeModelCluster]:
    with serve_kube(state) as url:
        yield KubeModelCluster("models", client.ApiClient(client.Configuration(host=url)))


def stored(state: KubeState, kind: str, name: str = "celestial-bodies-classifier") -> dict[str, object]:
    return state.objects[(kind, "models", name)]


async def test_production_applies_every_object_and_passes_the_smoke_test(
    cluster: KubeModelCluster, state: KubeState
) -> None:
    outcome = await roll_out(cluster, PRODUCTION, FAST)
    assert outcome.ok, outcome.reason
    kinds = [kind for kind, _, _ in state.applied]
    assert kinds == [
        "deployments",
        "services",
        "ingresses",
        "horizontalpodautoscalers",
        "poddisruptionbudgets",
    ]
    for _, _, manifest in state.applied:
        validate(manifest, "1.30.0", strict=True)
    deployment = state.applied[0][2]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == DIGEST, "the image goes by digest"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert deployment["metadata"]["annotations"] == {
        "orbit.dev/repository": "octo-org/model",
        "orbit.dev/sha": "a" * 40,
        "orbit.dev/deployment-id": "11",
        "orbit.dev/pr": "0",
        "orbit.dev/history": "[]",
    }
    ingress = state.applied[2][2]
    assert ingress["spec"]["rules"][0]["host"] == "celestial-bodies-classifier.models.example.com"
    assert ingress["spec"]["tls"][0]["hosts"] == ["celestial-bodies-classifier.models.example.com"]
    assert ingress["metadata"]["annotations"] == {
        "orbit.dev/repository": "octo-org/model",
        "cert-manager.io/cluster-issuer": "letsencrypt",
    }
    assert state.applied[3][2]["spec"]["minReplicas"] == 2
    assert state.applied[4][2]["spec"]["minAvailable"] == 1
    smoke = [(verb, what) for _, verb, what in state.requests if verb.startswith("PROXY")]
    assert smoke == [
        ("PROXY GET", "celestial-bodies-classifier/readyz"),
        ("PROXY POST", "celestial-bodies-classifier/predict"),
    ]


async def test_a_second_apply_updates_in_place(cluster: KubeModelCluster, state: KubeState) -> None:
    assert (await roll_out(cluster, PRODUCTION, FAST)).ok
    first = stored(state, "deployments")["metadata"]
    assert (await roll_out(cluster, replace(PRODUCTION, image=NEXT, sha="b" * 40, deployment_id=12), FAST)).ok
    second = stored(state, "deployments")["metadata"]
    history = json.loads(second["annotations"]["orbit.dev/history"])  # type: ignore[index]
    assert history == [{"deployment_id": 11, "sha": "a" * 40, "image": DIGEST, "pull": 0}], (
        "what served before"
    )
    assert second["uid"] == first["uid"] and second["generation"] == first["generation"] + 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("stuck", "the rollout did not finish within 0 s"),
        ("crashloop", "the model container is crash-looping (4 restarts"),
        ("bad-predict", "smoke test: /predict answered 500"),
    ],
)
async def test_a_failed_rollout_restores_and_verifies_the_previous_revision(
    cluster: KubeModelCluster, state: KubeState, behaviour: str, reason: str
) -> None:
    assert (await roll_out(cluster, PRODUCTION, FAST)).ok
    state.behaviour[NEXT] = behaviour
    outcome = await roll_out(cluster, replace(PRODUCTION, image=NEXT, sha="b" * 40, deployment_id=12), FAST)
    assert not outcome.ok
    assert outcome.reason.startswith(reason), outcome.reason
    assert outcome.restored is True
    assert outcome.previous_sha == "a" * 40
    deployment = stored(state, "deployments")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == DIGEST  # type: ignore[index]
    assert deployment["metadata"]["annotations"]["orbit.dev/deployment-id"] == "11"  # type: ignore[index]
    assert state.serving["celestial-bodies-classifier"] == "ready"
    assert [v for _, v, w in state.requests if v.startswith("PROXY")][-2:] == ["PROXY GET", "PROXY POST"]


async def test_a_failed_first_rollout_has_nothing_to_restore(
    cluster: KubeModelCluster, state: KubeState
) -> None:
    state.behaviour[DIGEST] = "crashloop"
    outcome = await roll_out(cluster, PRODUCTION, FAST)
    assert (outcome.ok, outcome.restored) == (False, None)


async def test_a_preview_has_its_own_host_and_is_torn_down(
    cluster: KubeModelCluster, state: KubeState
) -> None:
    preview = replace(PRODUCTION, environment="pr-7")
    assert (await roll_out(cluster, preview, FAST)).ok
    assert [kind for kind, _, _ in state.applied] == ["deployments", "services", "ingresses"]
    assert state.applied[0][2]["spec"]["replicas"] == 1, "no autoscaler: one replica"
    ingress = stored(state, "ingresses", "celestial-bodies-classifier-pr-7")
    assert ingress["spec"]["rules"][0]["host"] == "pr-7.celestial-bodies-classifier.models.example.com"  # type: ignore[index]
    await tear_down(cluster, preview)
    assert not [key for key in state.objects if key[0] in ("deployments", "services", "ingresses")]
    await tear_down(cluster, preview)  # again: nothing left, nothing fails


async def test_a_conflict_is_temporary_and_a_retry_applies(
    cluster: KubeModelCluster, state: KubeState
) -> None:
    state.fail_next.append(409)
    with pytest.raises(TemporaryError, match="409"):
        await roll_out(cluster, PRODUCTION, FAST)
    assert (await roll_out(cluster, PRODUCTION, FAST)).ok


def model_pods(state: KubeState, instance: str = "celestial-bodies-classifier") -> list[dict[str, Any]]:
    return [
        pod
        for (kind, _, _), pod in state.objects.items()
        if kind == "pods" and pod["metadata"]["labels"]["app.kubernetes.io/instance"] == instance
    ]


async def test_the_autoscalers_replicas_survive_the_next_deploy(
    cluster: KubeModelCluster, state: KubeState
) -> None:
    assert (await roll_out(cluster, PRODUCTION, FAST)).ok
    assert "replicas" not in state.applied[0][2]["spec"], "production leaves replicas to the autoscaler"
    first = stored(state, "deployments")
    assert first["spec"]["replicas"] == 1, "the API's default, which the autoscaler can scale"  # type: ignore[index]
    scale(state, "celestial-bodies-classifier", 5)  # the autoscaler, under load
    assert (await roll_out(cluster, replace(PRODUCTION, image=NEXT, sha="b" * 40, deployment_id=12), FAST)).ok
    found: Any = stored(state, "deployments")
    assert found["spec"]["replicas"] == 5
    assert found["spec"]["template"]["spec"]["containers"][0]["image"] == NEXT
    assert [pod["status"]["containerStatuses"][0]["image"] for pod in model_pods(state)] == [NEXT] * 5
    assert found["status"]["availableReplicas"] == 5, "the rollout waited for the scaled count"


async def test_the_double_removes_a_field_orbit_stops_applying(
    cluster: KubeModelCluster, state: KubeState
) -> None:
    """Server-side apply as the double has it: a field orbit owned and omits now goes (and is defaulted),
    as when a Deployment an older orbit applied with `replicas: 2` is first applied without."""
    older = dict(deployment(PRODUCTION), spec={**deployment(PRODUCTION)["spec"], "replicas": 2})
    assert cluster.apply(older)["spec"]["replicas"] == 2
    assert cluster.apply(deployment(PRODUCTION))["spec"]["replicas"] == 1


@pytest.mark.parametrize("secret", [None, "registry-credentials"])
async def test_a_private_registrys_pull_secret_is_named_in_the_pod(
    cluster: KubeModelCluster, state: KubeState, secret: str | None
) -> None:
    assert (await roll_out(cluster, replace(PRODUCTION, pull_secret=secret), FAST)).ok
    pod = state.applied[0][2]["spec"]["template"]["spec"]
    validate(state.applied[0][2], "1.30.0", strict=True)
    assert pod.get("imagePullSecrets") == ([{"name": secret}] if secret else None)


KEYED = replace(PRODUCTION, api_key_secret="model-api-key")


def store_key_secret(state: KubeState) -> None:
    state.objects[("secrets", "models", "model-api-key")] = {"metadata": {"name": "model-api-key"}}


async def test_an_endpoint_with_a_key_gets_it_by_reference_and_refuses_the_keyless_smoke_test(
    cluster: KubeModelCluster, state: KubeState
) -> None:
    store_key_secret(state)
    outcome = await roll_out(cluster, KEYED, FAST)
    assert outcome.ok, outcome.reason
    validate(state.applied[0][2], "1.30.0", strict=True)
    env = state.applied[0][2]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[-1] == {
        "name": "MODEL_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "model-api-key", "key": "api-key"}},
    }, "the key by reference: the bot never reads the Secret"
    assert [v for _, v, _ in state.requests if v.startswith("PROXY")] == [
        "PROXY GET",
        "PROXY POST",
    ]


async def test_an_image_that_ignores_the_key_fails_the_deploy(
    cluster: KubeModelCluster, state: KubeState
) -> None:
    store_key_secret(state)
    assert (await roll_out(cluster, KEYED, FAST)).ok
    state.behaviour[NEXT] = "ignores-key"
    outcome = await roll_out(cluster, replace(KEYED, image=NEXT, sha="b" * 40, deployment_id=12), FAST)
    assert not outcome.ok
    assert outcome.reason.startswith("smoke test: /predict without the API key answered 200, not 401")
    assert outcome.restored is True


async def test_a_missing_key_secret_fails_at_once_naming_it(
    cluster: KubeModelCluster, state: KubeState
) -> None:
    outcome = await roll_out(
        cluster, replace(KEYED, image=NEXT), Timing(deadline_seconds=30, poll_seconds=0.02)
    )
    assert not outcome.ok
    assert outcome.reason == (
        'the model container cannot start (CreateContainerConfigError: secret "model-api-key" not found)'
    )


def secrets_named(manifest: dict[str, Any]) -> set[str]:
    """Return every Secret a Deployment's pod names: variables, sources of variables, volumes, pulls."""
    pod = manifest["spec"]["template"]["spec"]
    named = {entry["name"] for entry in pod.get("imagePullSecrets", [])}
    named |= {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    for container in pod["containers"]:
        named |= {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        named |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
    return named


async def test_a_preview_never_gets_productions_key(cluster: KubeModelCluster, state: KubeState) -> None:
    """The reviewer's attack (F4): a preview runs a PR's code (a fork's, after `/deploy`), which read
    MODEL_API_KEY from production's Secret and called production with it. A preview's Deployment now
    names `<secret>-preview`, and nothing of production's; production's keeps its Secret."""
    store_key_secret(state)
    state.objects[("secrets", "models", "model-api-key-preview")] = {
        "metadata": {"name": "model-api-key-preview"}
    }
    deployer = Deployer(
        cluster, "models", "", "registry.example.com", "models.example.com", api_key_secret="model-api-key"
    )
    repo = Repo("octo-org", "model")
    production = deployer.target(repo, "production", DIGEST, "a" * 40, 11)
    preview = deployer.target(repo, "pr-7", NEXT, "b" * 40, 12)
    assert (await roll_out(cluster, production, FAST)).ok
    assert (await roll_out(cluster, preview, FAST)).ok
    applied = {name: manifest for kind, name, manifest in state.applied if kind == "deployments"}
    assert secrets_named(applied[production.name]) == {"model-api-key"}
    assert secrets_named(applied[preview.name]) == {"model-api-key-preview"}
    for manifest in manifests(preview):
        assert '"model-api-key"' not in json.dumps(manifest), manifest["kind"]
    env = applied[preview.name]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[-1] == {
        "name": "MODEL_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "model-api-key-preview", "key": "api-key"}},
    }


async def test_a_preview_without_its_own_key_secret_fails_naming_it(
    cluster: KubeModelCluster, state: KubeState
) -> None:
    store_key_secret(state)  # production's only: a preview does not fall back to it
    outcome = await roll_out(
        cluster,
        replace(KEYED, environment="pr-7", image=NEXT),
        Timing(deadline_seconds=30, poll_seconds=0.02),
    )
    assert outcome.reason == (
        "the model container cannot start"
        ' (CreateContainerConfigError: secret "model-api-key-preview" not found)'
    )

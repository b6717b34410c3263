"""The runner pod and secret, created with the real `kubernetes` client against an API double."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import kubernetes
import pytest
from kubernetes import client
from kubernetes_validate import validate

from bot.app import runners_from
from bot.errors import PermanentError, TemporaryError
from bot.settings import Settings
from deploy.kube import KubeModelCluster
from runner.classes import RunnerClass, class_for, default_classes
from runner.kube import KubeCluster
from runner.podspec import RunnerJob, pod_manifest, runner_name, secret_manifest
from tests.kube_double import KubeState, serve_kube, write_kubeconfig

JOB = RunnerJob("octo-org/model", job_id=555, run_id=77, pull_number=7, labels=("self-hosted", "orbit-gpu"))
GPU = default_classes("ghcr.io/octo-org/runner:1", "nvidia.com/gpu", 2)["orbit-gpu"]
JIT = "eyJ0aGlzIjoiaXMgYSBzZWNyZXQgaml0IGNvbmZpZyJ9"


@pytest.fixture
def kube() -> Iterator[tuple[KubeState, KubeCluster]]:
    state = KubeState()
    with serve_kube(state) as url:
        configuration = client.Configuration(host=url)
        yield state, KubeCluster("orbit-runners", client.ApiClient(configuration))


def create_runner(cluster: KubeCluster, klass: RunnerClass = GPU) -> str:
    uid, _ = asyncio.run(cluster.create_pod(pod_manifest(JOB, klass)))
    asyncio.run(cluster.create_secret(secret_manifest(JOB, klass, JIT, uid)))
    return uid


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    for manifest in (pod_manifest(JOB, GPU), secret_manifest(JOB, GPU, JIT, "uid-1")):
        validate(manifest, "1.30.0", strict=True)


def test_the_pod_has_every_field_and_no_secret(kube: tuple[KubeState, KubeCluster]) -> None:
    state, cluster = kube
    uid = create_runner(cluster)
    pod: dict[str, Any] = state.of("pods")[runner_name(555)]
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert JIT not in str(pod)
    env = {e["name"]: e for e in container["env"]}
    assert env["ACTIONS_RUNNER_INPUT_JITCONFIG"]["valueFrom"]["secretKeyRef"] == {
        "name": "orbit-runner-555",
        "key": "jitconfig",
    }
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == GPU.deadline_seconds
    assert spec["automountServiceAccountToken"] is False
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["work"] == {"name": "work", "emptyDir": {}}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert pod["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "orbit",
        "orbit.dev/repository": "octo-org.model",
        "orbit.dev/run": "77",
        "orbit.dev/job": "555",
        "orbit.dev/pull-request": "7",
        "orbit.dev/class": "orbit-gpu",
        "orbit.dev/gpus": "1",
    }
    secret = state.of("secrets")[runner_name(555)]
    assert secret["stringData"] == {"jitconfig": JIT}
    assert secret["metadata"]["ownerReferences"][0]["uid"] == uid


def test_a_cpu_class_asks_for_no_gpu() -> None:
    cpu = default_classes("img", "nvidia.com/gpu", 2)["orbit-cpu"]
    limits = pod_manifest(JOB, cpu)["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits


def test_a_second_create_changes_nothing(kube: tuple[KubeState, KubeCluster]) -> None:
    state, cluster = kube
    uid = create_runner(cluster)
    again, new = asyncio.run(cluster.create_pod(pod_manifest(JOB, GPU)))
    asyncio.run(cluster.create_secret(secret_manifest(JOB, GPU, JIT, again)))
    assert (again, new) == (uid, False)
    assert len(state.of("pods")) == 1
    assert len(state.of("secrets")) == 1


def test_deleting_the_pod_takes_the_secret_and_a_missing_one_is_fine(
    kube: tuple[KubeState, KubeCluster],
) -> None:
    state, cluster = kube
    create_runner(cluster)
    cluster.delete_runner(runner_name(555))
    cluster.delete_runner(runner_name(555))
    assert state.of("pods") == {}
    assert state.of("secrets") == {}


def test_listing_finds_only_managed_pods_with_their_state(kube: tuple[KubeState, KubeCluster]) -> None:
    state, cluster = kube
    create_runner(cluster)
    stranger = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": []},
    }
    client.CoreV1Api(cluster.http.api).create_namespaced_pod("orbit-runners", stranger)
    state.set_waiting(runner_name(555), "ImagePullBackOff")
    state.add_event(runner_name(555), "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
    (pod,) = cluster.runner_pods()
    assert (pod.name, pod.phase, pod.waiting_reason) == ("orbit-runner-555", "Pending", "ImagePullBackOff")
    assert pod.labels["orbit.dev/job"] == "555"
    assert cluster.pod_events(runner_name(555)) == ["0/3 nodes are available: 3 Insufficient nvidia.com/gpu."]


@pytest.mark.parametrize(
    ("code", "kind"), [(500, TemporaryError), (503, TemporaryError), (403, PermanentError)]
)
def test_api_failures_are_classified(
    kube: tuple[KubeState, KubeCluster], code: int, kind: type[Exception]
) -> None:
    state, cluster = kube
    state.fail_next = [code]
    with pytest.raises(kind):
        asyncio.run(cluster.create_pod(pod_manifest(JOB, GPU)))


def test_runner_classes_are_chosen_by_labels() -> None:
    classes = default_classes("img", "nvidia.com/gpu", 2)
    assert class_for(["self-hosted", "orbit-gpu"], classes) == classes["orbit-gpu"]
    assert class_for(["self-hosted", "linux", "orbit-cpu"], classes) == classes["orbit-cpu"]
    assert class_for(["ubuntu-latest"], classes) is None
    assert class_for(["self-hosted", "orbit-gpu", "orbit-cpu"], classes) is None
    assert class_for(["self-hosted", "orbit-gpu", "someone-elses"], classes) is None


def test_labels_are_matched_whatever_their_case_as_github_matches_them() -> None:
    """A job asking for `[Self-Hosted, Orbit-GPU]` gets orbit's runners from GitHub: orbit must see it too."""
    classes = default_classes("img", "nvidia.com/gpu", 2)
    assert class_for(["Self-Hosted", "Orbit-GPU"], classes) == classes["orbit-gpu"]
    assert class_for(["self-hosted", "ORBIT-CPU", "Linux"], classes) == classes["orbit-cpu"]
    assert class_for(["self-hosted", "orbit-gpu", "Orbit-CPU"], classes) is None


def test_the_cluster_orbit_serve_builds_from_a_kubeconfig_reaches_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = KubeState()
    with serve_kube(state) as url:
        # The client reads $KUBECONFIG once, when it is imported, as it would at `orbit serve` start-up.
        path = str(write_kubeconfig(tmp_path / "kubeconfig", url))
        monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", path)
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        settings = Settings(
            github_app_id=1, github_private_key="k", webhook_secret="s", kube_namespace="orbit-runners"
        )
        runners = runners_from(settings)
        assert runners is not None
        create_runner(cast(KubeCluster, runners.cluster))
        assert runner_name(555) in state.of("pods")
        assert KubeModelCluster("models").pods("none") == []


def test_a_class_s_pods_are_listed_by_their_metadata_only(kube: tuple[KubeState, KubeCluster]) -> None:
    state, cluster = kube
    create_runner(cluster)
    cpu = default_classes("ghcr.io/octo-org/runner:1", "nvidia.com/gpu", 2)["orbit-cpu"]
    other = RunnerJob(
        "octo-org/model", job_id=556, run_id=78, pull_number=7, labels=("self-hosted", "orbit-cpu")
    )
    asyncio.run(cluster.create_pod(pod_manifest(other, cpu)))
    [labels] = asyncio.run(cluster.class_pods("orbit-gpu"))
    assert (labels["orbit.dev/job"], labels["orbit.dev/class"]) == ("555", "orbit-gpu")
    assert [pod["orbit.dev/job"] for pod in asyncio.run(cluster.class_pods("orbit-cpu"))] == ["556"]
    assert state.metadata_lists == 2

"""The runner pod runs pull requests' code: each class's pod is locked down, and nothing drops a guard
unnoticed. Every runner class (GPU and CPU) meets the Pod Security Standard "restricted" enforced in
its namespace, holds its JIT config only through an env var from its Secret, and is bounded in
resources and time."""

from typing import Any

import pytest
from kubernetes_validate import validate

from runner.classes import GpuNodes, RunnerClass, default_classes
from runner.podspec import JIT_KEY, RunnerJob, pod_manifest, runner_name, secret_manifest

CLASSES = default_classes(
    "ghcr.io/octo-org/runner:1",
    "nvidia.com/gpu",
    2,
    cpu_image="ghcr.io/octo-org/runner-cpu:1",
    build_namespace="orbit-builds",
)
JIT = "eyJ0aGlzIjoiaXMgYSBzZWNyZXQgaml0IGNvbmZpZyJ9"


def job_for(klass: RunnerClass) -> RunnerJob:
    return RunnerJob(
        "octo-org/model", job_id=555, run_id=77, pull_number=7, labels=("self-hosted", klass.label)
    )


@pytest.fixture(params=sorted(CLASSES))
def klass(request: pytest.FixtureRequest) -> RunnerClass:
    return CLASSES[request.param]


@pytest.fixture
def pod(klass: RunnerClass) -> dict[str, Any]:
    return pod_manifest(job_for(klass), klass, installation=42)


@pytest.fixture(params=["orbit-cpu", "orbit-data", "orbit-gpu"])
def restricted_pod(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A pod of a class that runs pull requests' code beside nothing privileged: all but the build class."""
    klass = CLASSES[request.param]
    return pod_manifest(job_for(klass), klass, installation=42)


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec["containers"], *spec.get("ephemeralContainers", [])]


def effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """Return a security setting as the kubelet applies it: the container's, else the pod's."""
    own = container.get("securityContext") or {}
    return own[key] if key in own else (pod["spec"].get("securityContext") or {}).get(key)


def test_every_class_is_checked() -> None:
    assert sorted(CLASSES) == ["orbit-build", "orbit-cpu", "orbit-data", "orbit-gpu"]
    assert CLASSES["orbit-gpu"].gpus and not CLASSES["orbit-cpu"].gpus and not CLASSES["orbit-build"].gpus


def test_the_cpu_classes_run_the_cpu_image_and_the_build_class_its_own_namespace() -> None:
    assert CLASSES["orbit-gpu"].image == "ghcr.io/octo-org/runner:1"
    assert (
        CLASSES["orbit-cpu"].image
        == CLASSES["orbit-data"].image
        == CLASSES["orbit-build"].image
        == "ghcr.io/octo-org/runner-cpu:1"
    )
    assert CLASSES["orbit-build"].namespace == "orbit-builds"
    assert CLASSES["orbit-cpu"].namespace == CLASSES["orbit-gpu"].namespace == "", "the runners' namespace"
    assert "orbit-build" not in default_classes("img", "nvidia.com/gpu", 2), "no build namespace: no class"


def test_every_capability_is_dropped(restricted_pod: dict[str, Any]) -> None:
    for container in containers(restricted_pod):
        capabilities = container["securityContext"]["capabilities"]
        assert capabilities["drop"] == ["ALL"], container["name"]
        assert not capabilities.get("add"), container["name"]


def test_the_runtime_default_seccomp_profile_applies(restricted_pod: dict[str, Any]) -> None:
    for container in containers(restricted_pod):
        assert effective(restricted_pod, container, "seccompProfile") == {"type": "RuntimeDefault"}, (
            container["name"]
        )


def test_it_runs_as_non_root(pod: dict[str, Any]) -> None:
    for container in containers(pod):
        assert effective(pod, container, "runAsNonRoot") is True, container["name"]
        assert effective(pod, container, "runAsUser") not in (None, 0), container["name"]


def test_no_privilege_escalation_and_nothing_privileged(restricted_pod: dict[str, Any]) -> None:
    for container in containers(restricted_pod):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert not context.get("privileged"), container["name"]
        assert context.get("procMount", "Default") == "Default", container["name"]


def test_only_the_build_class_is_privileged_and_only_in_its_own_namespace() -> None:
    privileged = {label for label, klass in CLASSES.items() if klass.privileged}
    assert privileged == {"orbit-build"}
    assert CLASSES["orbit-build"].namespace not in ("", "orbit-runners")
    build = pod_manifest(job_for(CLASSES["orbit-build"]), CLASSES["orbit-build"], installation=42)
    (container,) = containers(build)
    assert container["securityContext"]["privileged"] is True
    # the API server refuses a privileged container that forbids privilege escalation
    assert container["securityContext"]["allowPrivilegeEscalation"] is True
    assert container["securityContext"]["runAsUser"] == 1001, "the runner user still runs every step"
    spec = build["spec"]
    assert spec["nodeSelector"] == {"orbit.dev/build": "true"}, "only on nodes kept for builds"
    assert spec["tolerations"] == [{"key": "orbit.dev/build", "operator": "Exists", "effect": "NoSchedule"}]
    for other in ("orbit-cpu", "orbit-gpu"):
        tolerated = {t["key"] for t in CLASSES[other].tolerations}
        assert "orbit.dev/build" not in tolerated, f"{other} pods never land on a build node"


def test_gpu_nodes_place_only_the_gpu_pods() -> None:
    nodes = GpuNodes({"nvidia.com/gpu.present": "true"}, ({"key": "gpu", "operator": "Exists"},), "nvidia")
    classes = default_classes("img", "nvidia.com/gpu", 2, cpu_image="cpu", gpu_nodes=nodes)
    gpu = pod_manifest(job_for(classes["orbit-gpu"]), classes["orbit-gpu"])["spec"]
    cpu = pod_manifest(job_for(classes["orbit-cpu"]), classes["orbit-cpu"])["spec"]
    assert gpu["runtimeClassName"] == "nvidia"
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "gpu", "operator": "Exists"} in gpu["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    assert "runtimeClassName" not in cpu and cpu["nodeSelector"] == {} and cpu["tolerations"] == []


def test_no_service_account_token_is_mounted(pod: dict[str, Any]) -> None:
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod["spec"], "the namespace's default account, which may do nothing"


def test_nothing_of_the_host(pod: dict[str, Any]) -> None:
    spec = pod["spec"]
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        assert spec.get(field) in (None, False), field
    assert [v["name"] for v in spec["volumes"] if "hostPath" in v] == []
    assert {key for v in spec["volumes"] for key in v if key != "name"} == {"emptyDir"}, "scratch space only"
    for container in containers(pod):
        assert not [p for p in container.get("ports", []) if "hostPort" in p], container["name"]


def test_the_jit_config_comes_only_through_env_from_its_secret(
    klass: RunnerClass, pod: dict[str, Any]
) -> None:
    name = runner_name(555)
    (container,) = pod["spec"]["containers"]
    from_secrets = [e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert from_secrets == [
        {
            "name": "ACTIONS_RUNNER_INPUT_JITCONFIG",
            "valueFrom": {"secretKeyRef": {"name": name, "key": JIT_KEY}},
        }
    ]
    assert "envFrom" not in container, "no Secret or ConfigMap poured into the environment"
    assert not [v for v in pod["spec"]["volumes"] if {"secret", "projected", "configMap"} & set(v)]
    assert [e for e in container["env"] if "value" in e] == [
        {"name": "RUNNER_WORKDIR", "value": "/home/runner/_work"}
    ], "no other value, and never the config itself"
    secret = secret_manifest(job_for(klass), klass, JIT, "uid-1")
    assert secret["metadata"]["name"] == name
    assert secret["stringData"] == {JIT_KEY: JIT}
    assert JIT not in str(pod)


def test_resources_are_limited(klass: RunnerClass, pod: dict[str, Any]) -> None:
    for container in containers(pod):
        limits = container["resources"]["limits"]
        assert limits["cpu"] == klass.cpu and limits["memory"] == klass.memory, container["name"]
        assert container["resources"]["requests"] == {"cpu": klass.cpu, "memory": klass.memory}
        assert limits.get(klass.gpu_resource) == (str(klass.gpus) if klass.gpus else None)
    shm = next(v for v in pod["spec"]["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": klass.shm_size}, "memory-backed, bounded"


def test_the_pod_has_a_deadline(klass: RunnerClass, pod: dict[str, Any]) -> None:
    assert pod["spec"]["activeDeadlineSeconds"] == klass.deadline_seconds
    assert 0 < klass.deadline_seconds <= 24 * 3600
    assert pod["spec"]["restartPolicy"] == "Never"


def test_pod_and_secret_validate_against_the_kubernetes_schemas(
    klass: RunnerClass, pod: dict[str, Any]
) -> None:
    validate(pod, "1.30.0", strict=True)
    validate(secret_manifest(job_for(klass), klass, JIT, "uid-1"), "1.30.0", strict=True)

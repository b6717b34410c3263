"""The runner pod runs pull requests' code: each class's pod is locked down, and nothing drops a guard
unnoticed. Every runner class (GPU and CPU) meets the Pod Security Standard "restricted" enforced in
its namespace, holds its JIT config only through an env var from its Secret, and is bounded in
resources and time."""

from typing import Any

import pytest
from kubernetes_validate import validate

from runner.classes import RunnerClass, default_classes
from runner.podspec import JIT_KEY, RunnerJob, pod_manifest, runner_name, secret_manifest

CLASSES = default_classes("ghcr.io/octo-org/runner:1", "nvidia.com/gpu", 2)
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


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec["containers"], *spec.get("ephemeralContainers", [])]


def effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """Return a security setting as the kubelet applies it: the container's, else the pod's."""
    own = container.get("securityContext") or {}
    return own[key] if key in own else (pod["spec"].get("securityContext") or {}).get(key)


def test_both_classes_are_checked() -> None:
    assert sorted(CLASSES) == ["orbit-cpu", "orbit-gpu"]
    assert CLASSES["orbit-gpu"].gpus and not CLASSES["orbit-cpu"].gpus


def test_every_capability_is_dropped(pod: dict[str, Any]) -> None:
    for container in containers(pod):
        capabilities = container["securityContext"]["capabilities"]
        assert capabilities["drop"] == ["ALL"], container["name"]
        assert not capabilities.get("add"), container["name"]


def test_the_runtime_default_seccomp_profile_applies(pod: dict[str, Any]) -> None:
    for container in containers(pod):
        assert effective(pod, container, "seccompProfile") == {"type": "RuntimeDefault"}, container["name"]


def test_it_runs_as_non_root(pod: dict[str, Any]) -> None:
    for container in containers(pod):
        assert effective(pod, container, "runAsNonRoot") is True, container["name"]
        assert effective(pod, container, "runAsUser") not in (None, 0), container["name"]


def test_no_privilege_escalation_and_nothing_privileged(pod: dict[str, Any]) -> None:
    for container in containers(pod):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert not context.get("privileged"), container["name"]
        assert context.get("procMount", "Default") == "Default", container["name"]


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

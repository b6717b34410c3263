"""The runner pod and its Secret, whole: every field as written, so that no guard (service links, the
pod-level security context, the Secret's owner) and no name the pod needs to start (its volumes,
its command) changes unnoticed; and the labels reconcile finds pods by.

Written to kill the mutants scripts/mutation found alive.
"""

from typing import Any

import pytest

from runner.classes import default_classes
from runner.podspec import RunnerJob, labels, pod_manifest, secret_manifest

CLASSES = default_classes("ghcr.io/octo-org/runner:1", "nvidia.com/gpu", 2)
GPU = CLASSES["orbit-gpu"]
JOB = RunnerJob("octo-org/model", job_id=555, run_id=77, pull_number=7, labels=("self-hosted", "orbit-gpu"))
LABELS = {
    "app.kubernetes.io/managed-by": "orbit",
    "orbit.dev/repository": "octo-org.model",
    "orbit.dev/run": "77",
    "orbit.dev/job": "555",
    "orbit.dev/pull-request": "7",
    "orbit.dev/class": "orbit-gpu",
    "orbit.dev/gpus": "1",
}


def test_the_gpu_runner_pod_is_exactly_this() -> None:
    assert pod_manifest(JOB, GPU, installation=42) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "orbit-runner-555",
            "labels": LABELS,
            "annotations": {"orbit.dev/repository": "octo-org/model", "orbit.dev/installation": "42"},
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 3 * 3600,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1001, "fsGroup": 1001},
            "nodeSelector": {},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "runner",
                    "image": "ghcr.io/octo-org/runner:1",
                    "command": ["/home/runner/run.sh"],
                    "env": [
                        {
                            "name": "ACTIONS_RUNNER_INPUT_JITCONFIG",
                            "valueFrom": {"secretKeyRef": {"name": "orbit-runner-555", "key": "jitconfig"}},
                        },
                        {"name": "RUNNER_WORKDIR", "value": "/home/runner/_work"},
                    ],
                    "resources": {
                        "requests": {"cpu": "4", "memory": "16Gi"},
                        "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
                    },
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1001,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "volumeMounts": [
                        {"name": "work", "mountPath": "/home/runner/_work"},
                        {"name": "dshm", "mountPath": "/dev/shm"},
                    ],
                }
            ],
            "volumes": [
                {"name": "work", "emptyDir": {}},
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
            ],
        },
    }


def test_every_mount_names_a_volume_of_the_pod_and_every_volume_is_mounted() -> None:
    for klass in CLASSES.values():
        spec = pod_manifest(JOB, klass)["spec"]
        mounted = {m["name"] for c in spec["containers"] for m in c["volumeMounts"]}
        assert mounted == {v["name"] for v in spec["volumes"]}


def test_an_installation_left_out_is_annotated_zero() -> None:
    assert pod_manifest(JOB, GPU)["metadata"]["annotations"]["orbit.dev/installation"] == "0"


def test_the_secret_is_owned_by_its_pod_and_goes_with_it() -> None:
    assert secret_manifest(JOB, GPU, "the-config", "uid-1") == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "orbit-runner-555",
            "labels": LABELS,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": "orbit-runner-555",
                    "uid": "uid-1",
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "type": "Opaque",
        "stringData": {"jitconfig": "the-config"},
    }


@pytest.mark.parametrize(
    ("repo", "value"),
    [
        ("Octo-Org/Model_1", "Octo-Org.Model_1"),  # case kept; the slash becomes a dot
        ("octo org/my model", "octo_org.my_model"),  # anything else becomes one underscore each
        ("_/x_", "x"),  # no separator at either end
        ("Xo/oX", "Xo.oX"),  # and nothing else stripped
        ("-/-", "none"),  # nothing left
        ("a" * 40 + "/" + "b" * 40, "a" * 40 + "." + "b" * 22),  # 63 characters at most
    ],
)
def test_the_repository_label_is_a_valid_label_value(repo: str, value: str) -> None:
    job = RunnerJob(repo, job_id=1, run_id=2, pull_number=None, labels=())
    found: dict[str, Any] = labels(job, GPU)
    assert found["orbit.dev/repository"] == value
    assert found["orbit.dev/pull-request"] == "none"
    assert found["orbit.dev/run"] == "2"

"""The Pod and Secret of one ephemeral runner, as Kubernetes manifests (plain dicts)."""

import re
from dataclasses import dataclass
from typing import Any

from runner.classes import RunnerClass

JIT_KEY = "jitconfig"
LABEL_PREFIX = "orbit.dev"
WORK_DIR = "/home/runner/_work"


@dataclass(frozen=True)
class RunnerJob:
    """The workflow job a runner is started for."""

    repo: str
    job_id: int
    run_id: int
    pull_number: int | None
    labels: tuple[str, ...]


def runner_name(job_id: int) -> str:
    """Return the pod, secret and runner name of a job: derived from its id, so retries agree."""
    return f"orbit-runner-{job_id}"


def _label_value(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:63].strip("_.-") or "none"


def labels(job: RunnerJob, klass: RunnerClass) -> dict[str, str]:
    """Return the labels that find the pod by repository, run, job, pull request and class."""
    return {
        "app.kubernetes.io/managed-by": "orbit",
        f"{LABEL_PREFIX}/repository": _label_value(job.repo.replace("/", ".")),
        f"{LABEL_PREFIX}/run": str(job.run_id),
        f"{LABEL_PREFIX}/job": str(job.job_id),
        f"{LABEL_PREFIX}/pull-request": str(job.pull_number or "none"),
        f"{LABEL_PREFIX}/class": klass.label,
    }


def secret_manifest(job: RunnerJob, klass: RunnerClass, jit_config: str, pod_uid: str) -> dict[str, Any]:
    """Return the Secret holding the JIT config, owned by the pod so it goes when the pod goes."""
    name = runner_name(job.job_id)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": labels(job, klass),
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": pod_uid, "blockOwnerDeletion": True}
            ],
        },
        "type": "Opaque",
        "stringData": {JIT_KEY: jit_config},
    }


# What every class but the build class runs with: Pod Security Standard "restricted".
RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 1001,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The build class only, in its own namespace: rootless buildah needs a privileged container (user
# namespaces, mounts). The runner user still runs every step.
PRIVILEGED = {"runAsNonRoot": True, "runAsUser": 1001, "privileged": True, "allowPrivilegeEscalation": True}


def _resources(klass: RunnerClass) -> dict[str, dict[str, str]]:
    limits = {"cpu": klass.cpu, "memory": klass.memory}
    if klass.gpus:
        limits[klass.gpu_resource] = str(klass.gpus)
    return {"requests": {"cpu": klass.cpu, "memory": klass.memory}, "limits": limits}


def _container(job: RunnerJob, klass: RunnerClass) -> dict[str, Any]:
    secret_ref = {"secretKeyRef": {"name": runner_name(job.job_id), "key": JIT_KEY}}
    return {
        "name": "runner",
        "image": klass.image,
        "command": ["/home/runner/run.sh"],
        "env": [
            {"name": "ACTIONS_RUNNER_INPUT_JITCONFIG", "valueFrom": secret_ref},
            {"name": "RUNNER_WORKDIR", "value": WORK_DIR},
        ],
        "resources": _resources(klass),
        "securityContext": PRIVILEGED if klass.privileged else RESTRICTED,
        "volumeMounts": [{"name": "work", "mountPath": WORK_DIR}, {"name": "dshm", "mountPath": "/dev/shm"}],  # noqa: S108
    }


def pod_manifest(job: RunnerJob, klass: RunnerClass, installation: int = 0) -> dict[str, Any]:
    """Return the runner Pod: non-root, one job, a deadline, GPU limit when the class has GPUs."""
    annotations = {f"{LABEL_PREFIX}/repository": job.repo, f"{LABEL_PREFIX}/installation": str(installation)}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": runner_name(job.job_id),
            "labels": labels(job, klass),
            "annotations": annotations,
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": klass.deadline_seconds,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1001, "fsGroup": 1001},
            "nodeSelector": dict(klass.node_selector),
            "tolerations": [dict(t) for t in klass.tolerations],
            **({"runtimeClassName": klass.runtime_class} if klass.runtime_class else {}),
            "containers": [_container(job, klass)],
            "volumes": [
                {"name": "work", "emptyDir": {}},
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": klass.shm_size}},
            ],
        },
    }

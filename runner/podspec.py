"""The Pod and Secret of one ephemeral runner, as Kubernetes manifests (plain dicts)."""

import re
from dataclasses import dataclass
from typing import Any

from runner.classes import RunnerClass

JIT_KEY = "jitconfig"
LABEL_PREFIX = "orbit.dev"
WORK_DIR = "/home/runner/_work"
CACHE_DIR = "/var/cache/orbit"  # the repository's folder of the shared cache, where a class mounts it
CACHE_ENV = "ORBIT_CACHE"  # tells train.yml's steps where it is (unset: no shared cache)
GPUS_LABEL = f"{LABEL_PREFIX}/gpus"  # the GPUs a pod holds, for the GPU cap
_SEGMENT = re.compile(r"[a-z0-9_][a-z0-9_.-]*")


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
        GPUS_LABEL: str(klass.gpus),
    }


def cache_folder(repo: str, installation: int) -> str | None:
    """Return the repository's folder on the shared cache volume, or None for a name unfit for a path.

    The installation is part of it: a repository renamed away and its name taken by another account
    (another installation) never finds the first one's data.
    """
    owner, _, name = repo.lower().partition("/")
    fit = all(_SEGMENT.fullmatch(part) and part not in (".", "..") for part in (owner, name))
    return f"{installation}/{owner}/{name}" if fit and installation > 0 else None


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


def _cache_mount(klass: RunnerClass, folder: str | None) -> list[dict[str, Any]]:
    if klass.cache is None or folder is None:
        return []
    return [{"name": "cache", "mountPath": CACHE_DIR, "subPath": folder, "readOnly": klass.cache.read_only}]


def _cache_volume(klass: RunnerClass, folder: str | None) -> list[dict[str, Any]]:
    if klass.cache is None or folder is None:
        return []
    claim = {"claimName": klass.cache.claim, "readOnly": klass.cache.read_only}
    return [{"name": "cache", "persistentVolumeClaim": claim}]


def _container(job: RunnerJob, klass: RunnerClass, cache: str | None) -> dict[str, Any]:
    secret_ref = {"secretKeyRef": {"name": runner_name(job.job_id), "key": JIT_KEY}}
    mounted = _cache_mount(klass, cache)
    return {
        "name": "runner",
        "image": klass.image,
        "command": ["/home/runner/run.sh"],
        "env": [
            {"name": "ACTIONS_RUNNER_INPUT_JITCONFIG", "valueFrom": secret_ref},
            {"name": "RUNNER_WORKDIR", "value": WORK_DIR},
            *([{"name": CACHE_ENV, "value": CACHE_DIR}] if mounted else []),
        ],
        "resources": _resources(klass),
        "securityContext": PRIVILEGED if klass.privileged else RESTRICTED,
        "volumeMounts": [
            {"name": "work", "mountPath": WORK_DIR},
            {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108
            *mounted,
        ],
    }


def pod_manifest(job: RunnerJob, klass: RunnerClass, installation: int = 0) -> dict[str, Any]:
    """Return the runner Pod: non-root, one job, a deadline, GPU limit when the class has GPUs.

    A class with the shared cache mounts the repository's own folder of it (read-only unless the class
    runs no pull request's code), and says where in `ORBIT_CACHE`.
    """
    cache = cache_folder(job.repo, installation)
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
            "containers": [_container(job, klass, cache)],
            "volumes": [
                {"name": "work", "emptyDir": {}},
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": klass.shm_size}},
                *_cache_volume(klass, cache),
            ],
        },
    }

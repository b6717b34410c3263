"""Roll an environment out and prove it serves; on failure, restore the revision that served before.

Apply every object, wait until the Deployment's newest generation is observed with every replica
updated and available (a crash loop or a stalled rollout fails early), then smoke-test `/readyz` and
one `/predict` through the Service. A failure re-applies the previous image and verifies it the
same way, so production keeps serving the model it had.

When the endpoint asks for an API key, the smoke test cannot send it (the bot never reads the
Secret), so it asks `/predict` without one and expects the refusal: a 401 proves the key is checked,
and an answer would mean the endpoint is open to anyone. `/readyz` still proves the model loaded.

Objects that another repository's model owns (its annotation says so) are neither applied over nor
deleted: each object of the environment is read and checked before anything is applied or deleted,
not only the Deployment (a Service or an Ingress can outlive it). Only a configured service name
shared by two repositories, or names made to collide, can lead there.
"""

import asyncio
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deploy.kube import ModelCluster
from deploy.manifests import API_KEY_ENV, HISTORY, Target, deployment, manifests, revisions, serves_another

SMOKE_IMAGE = Path(__file__).with_name("smoke.png")
CRASH_RESTARTS = 3
# Waiting reasons that no amount of waiting fixes: a missing Secret or key, an image not pulled.
CANNOT_START = frozenset({"CreateContainerConfigError", "ImagePullBackOff", "InvalidImageName"})


@dataclass(frozen=True)
class Timing:
    """How long to wait for a rollout, and how often to look."""

    deadline_seconds: float = 600.0
    poll_seconds: float = 2.0


@dataclass(frozen=True)
class Outcome:
    """How a rollout ended."""

    ok: bool
    reason: str = ""
    restored: bool | None = None  # after a failure: whether the previous revision serves again
    previous_sha: str | None = None


def _container_failure(pod: dict[str, Any]) -> str | None:
    """Return why a pod's model container cannot serve (a crash loop, a start that cannot work), or None."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        restarts = int(status.get("restartCount") or 0)
        if waiting.get("reason") in CANNOT_START:
            detail = f": {waiting['message']}" if waiting.get("message") else ""
            return f"the model container cannot start ({waiting['reason']}{detail})"
        if waiting.get("reason") == "CrashLoopBackOff" or restarts >= CRASH_RESTARTS:
            return f"the model container is crash-looping ({restarts} restarts in {pod['metadata']['name']})"
    return None


def _failing(pods: list[dict[str, Any]]) -> str | None:
    return next((failure for pod in pods if (failure := _container_failure(pod))), None)


def _rolled_out(found: dict[str, Any]) -> bool:
    spec, status = found.get("spec") or {}, found.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    return (
        int(status.get("observedGeneration", 0)) >= int(found["metadata"].get("generation", 1))
        and int(status.get("updatedReplicas", 0)) >= wanted
        and int(status.get("availableReplicas", 0)) >= wanted
        and int(status.get("replicas", wanted)) == wanted  # no old pods left
    )


def _stalled(found: dict[str, Any]) -> bool:
    conditions = (found.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded" for c in conditions
    )


async def wait_for_rollout(cluster: ModelCluster, name: str, timing: Timing) -> str | None:
    """Wait until the Deployment is rolled out; return why it failed, or None."""
    deadline = time.monotonic() + timing.deadline_seconds
    while True:
        found = await asyncio.to_thread(cluster.read, "Deployment", name)
        if found is None:
            return f"the Deployment {name} disappeared"
        if _rolled_out(found):
            return None
        if _stalled(found):
            return "the rollout stalled (ProgressDeadlineExceeded)"
        if failure := _failing(await asyncio.to_thread(cluster.pods, name)):
            return failure
        if time.monotonic() >= deadline:
            return f"the rollout did not finish within {timing.deadline_seconds:.0f} s"
        await asyncio.sleep(timing.poll_seconds)


async def smoke_test(cluster: ModelCluster, name: str, keyed: bool = False) -> str | None:
    """Ask the Service for /readyz and one /predict of a bundled image; return what went wrong, or None.

    `keyed`: the endpoint asks for an API key, which the bot does not hold: /predict must refuse.
    """
    ready = await asyncio.to_thread(cluster.proxy, name, "GET", "/readyz")
    if ready.status != 200:
        return f"smoke test: /readyz answered {ready.status}"
    files = {"image": (SMOKE_IMAGE.name, SMOKE_IMAGE.read_bytes())}
    answer = await asyncio.to_thread(cluster.proxy, name, "POST", "/predict", files)
    if keyed:
        return None if answer.status == 401 else _open_despite_key(answer.status)
    if answer.status != 200:
        return f"smoke test: /predict answered {answer.status}"
    try:
        prediction = json.loads(answer.body).get("prediction")
    except (ValueError, AttributeError):
        prediction = None
    return None if isinstance(prediction, str) else "smoke test: /predict answered without a prediction"


def _open_despite_key(status: int) -> str:
    return (
        f"smoke test: /predict without the API key answered {status}, not 401"
        f" (does the model's service check {API_KEY_ENV}?)"
    )


async def _verify(cluster: ModelCluster, target: Target, timing: Timing) -> str | None:
    keyed = target.api_key_secret is not None
    return await wait_for_rollout(cluster, target.name, timing) or await smoke_test(
        cluster, target.name, keyed
    )


def _previous(found: dict[str, Any] | None, target: Target) -> Target | None:
    if found is None:
        return None
    *history, current = revisions(found)
    return replace(
        target,
        image=current.image,
        sha=current.sha,
        deployment_id=current.deployment_id,
        pull=current.pull,
        history=tuple(history),
    )


async def _stored(cluster: ModelCluster, target: Target) -> dict[str, dict[str, Any] | None]:
    """Return each object of the environment as stored (None where there is none), by kind."""
    return {
        manifest["kind"]: await asyncio.to_thread(
            cluster.read, manifest["kind"], manifest["metadata"]["name"]
        )
        for manifest in manifests(target)
    }


def _taken(stored: dict[str, dict[str, Any] | None], target: Target) -> str | None:
    """Return why the environment's names are another repository's, or None when every object is free."""
    for kind, found in stored.items():
        if other := serves_another(found, target.repository):
            return (
                f"the {kind} {target.name} serves {other}'s model;"
                " two repositories cannot share a service name"
            )
    return None


async def roll_out(cluster: ModelCluster, target: Target, timing: Timing = Timing()) -> Outcome:
    """Apply the environment, verify it, and restore the previous revision if it fails."""
    stored = await _stored(cluster, target)
    if taken := _taken(stored, target):
        return Outcome(ok=False, reason=taken, restored=None)
    found = stored["Deployment"]
    previous = _previous(found, target)
    if previous is not None:
        target = replace(target, history=(*previous.history, previous.revision)[-HISTORY:])
    for manifest in manifests(target):
        await asyncio.to_thread(cluster.apply, manifest)
    failure = await _verify(cluster, target, timing)
    if failure is None:
        return Outcome(ok=True)
    if previous is None or previous.image == target.image:
        return Outcome(ok=False, reason=failure, restored=None)
    await asyncio.to_thread(cluster.apply, deployment(previous))
    restored = await _verify(cluster, previous, timing) is None
    return Outcome(ok=False, reason=failure, restored=restored, previous_sha=previous.sha)


async def tear_down(cluster: ModelCluster, target: Target) -> bool:
    """Delete every object of the environment; return False, deleting nothing, if any is another repository's.

    Each object is checked, not only the Deployment: a Service or an Ingress of the name may be there
    without it. Only objects that exist are deleted.
    """
    stored = await _stored(cluster, target)
    if _taken(stored, target):
        return False
    for manifest in reversed(manifests(target)):
        if stored[manifest["kind"]] is not None:
            await asyncio.to_thread(cluster.delete, manifest["kind"], manifest["metadata"]["name"])
    return True

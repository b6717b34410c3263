"""The Kubernetes calls of the runner feature, behind a Protocol; the real one uses the official client."""

import asyncio
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from kubernetes import client

from bot.kube_api import METADATA_ONLY, KubeApi

MANAGED = "app.kubernetes.io/managed-by=orbit"
CLASS_LABEL = "orbit.dev/class"
JOB_LABEL = "orbit.dev/job"


@dataclass(frozen=True)
class RunnerPod:
    """What the reconciler needs to know of a runner pod."""

    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    phase: str
    created: datetime | None
    started: datetime | None
    waiting_reason: str | None
    reason: str | None
    namespace: str = ""


class Cluster(Protocol):
    """Runner pods and their secrets in one namespace."""

    async def create_pod(self, manifest: dict[str, Any]) -> tuple[str, bool]:
        """Create the pod; return its uid and whether it is new (an existing one is returned as is)."""
        ...

    async def create_secret(self, manifest: dict[str, Any]) -> None:
        """Create the secret; one that exists already counts as success."""
        ...

    def delete_runner(self, name: str) -> None:
        """Delete the pod and the secret of that name; missing ones count as deleted."""
        ...

    def runner_pods(self) -> list[RunnerPod]:
        """Return every pod orbit manages."""
        ...

    async def class_pods(self, label: str) -> list[dict[str, str]]:
        """Return the labels of the runner pods of one class."""
        ...

    def pod_events(self, name: str) -> list[str]:
        """Return the messages of the pod's events, oldest first."""
        ...


class KubeCluster:
    """`Cluster` over the official client's ApiClient: in-cluster configuration, else the kubeconfig."""

    def __init__(self, namespace: str, api: client.ApiClient | None = None) -> None:
        self.namespace = namespace
        self.http = KubeApi(api)

    def _path(self, kind: str, name: str = "") -> str:
        base = f"/api/v1/namespaces/{self.namespace}/{kind}"
        return f"{base}/{name}" if name else base

    def _expect(self, method: str, kind: str, name: str, action: str, *tolerated: int, **options: Any) -> Any:
        return self.http.expect(method, self._path(kind, name), action, *tolerated, **options)

    async def _aexpect(
        self, method: str, kind: str, name: str, action: str, *tolerated: int, **options: Any
    ) -> Any:
        return await self.http.aexpect(method, self._path(kind, name), action, *tolerated, **options)

    async def create_pod(self, manifest: dict[str, Any]) -> tuple[str, bool]:
        """Create the pod or return the existing one's uid."""
        created = await self._aexpect("POST", "pods", "", "create pod", 409, body=manifest)
        if created is not None:
            return str(created["metadata"]["uid"]), True
        existing = await self._aexpect("GET", "pods", manifest["metadata"]["name"], "read pod")
        return str(existing["metadata"]["uid"]), False

    async def create_secret(self, manifest: dict[str, Any]) -> None:
        """Create the secret, tolerating one that exists."""
        await self._aexpect("POST", "secrets", "", "create secret", 409, body=manifest)

    def delete_runner(self, name: str) -> None:
        """Delete pod and secret by name."""
        for kind in ("pods", "secrets"):
            self._expect("DELETE", kind, name, f"delete {kind[:-1]}", 404)

    def runner_pods(self) -> list[RunnerPod]:
        """List the pods orbit manages."""
        found = self._expect("GET", "pods", "", "list pods", query=[("labelSelector", MANAGED)])
        return [_runner_pod(pod) for pod in found.get("items") or []]

    async def class_pods(self, label: str) -> list[dict[str, str]]:
        """Return the labels of the runner pods of one class (their metadata only)."""
        selector = [("labelSelector", f"{MANAGED},{CLASS_LABEL}={label}")]
        found = await self._aexpect("GET", "pods", "", "list pods", query=selector, headers=METADATA_ONLY)
        return [dict((item.get("metadata") or {}).get("labels") or {}) for item in found.get("items") or []]

    def pod_events(self, name: str) -> list[str]:
        """Return the messages of the pod's events."""
        selector = [("fieldSelector", f"involvedObject.name={name}")]
        found = self._expect("GET", "events", "", "list events", query=selector)
        return [str(event["message"]) for event in found.get("items") or [] if event.get("message")]


def _timestamp(value: object) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None


def _runner_pod(pod: dict[str, Any]) -> RunnerPod:
    metadata, status = pod.get("metadata") or {}, pod.get("status") or {}
    waiting = [
        s["state"]["waiting"].get("reason")
        for s in status.get("containerStatuses") or []
        if (s.get("state") or {}).get("waiting")
    ]
    return RunnerPod(
        name=str(metadata.get("name", "")),
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
        phase=str(status.get("phase") or "Unknown"),
        created=_timestamp(metadata.get("creationTimestamp")),
        started=_timestamp(status.get("startTime")),
        waiting_reason=waiting[0] if waiting else None,
        reason=status.get("reason"),
        namespace=str(metadata.get("namespace", "")),
    )


class Place(enum.Enum):
    """What `ClassPods.reserve` found for a job's pod."""

    RESERVED = "reserved"  # a place within the cap is the job's: create its pod
    EXISTS = "exists"  # the job has a pod already (a redelivery)
    FULL = "full"  # another pod would pass the class's cap


Labels = dict[str, str]


@dataclass
class _Known:
    """One class's pods as this process knows them: the last listing, and what it created since."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    listed: dict[str, Labels] = field(default_factory=dict)  # by job id
    listed_at: float | None = None  # when the listing was asked for
    creating: dict[str, Labels] = field(default_factory=dict)  # reserved; the create has not answered
    created: dict[str, tuple[float, Labels]] = field(default_factory=dict)  # answered at, since listed
    failed: tuple[float, Exception] | None = None  # when the last listing was asked for, and its error

    def pods(self) -> dict[str, Labels]:
        return {**self.listed, **{job: labels for job, (_, labels) in self.created.items()}, **self.creating}


class ClassPods:
    """Each runner class's pods, as one process decides the class's cap on them.

    A place is reserved under the class's lock, so concurrent deliveries never pass the cap together.
    The count is a listing asked for after the delivery began, plus the pods this process asked for
    since (in flight or created): one listing serves every delivery that began before it, so a burst
    lists once, and the pods other processes (replicas, `--workers`) created before a delivery began
    are in its count, as when each delivery listed for itself. Pods this process deletes leave the
    count at once.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._classes: dict[str, _Known] = {}

    def _known(self, label: str) -> _Known:
        return self._classes.setdefault(label, _Known())

    async def warm(self, cluster: Cluster, label: str, since: float) -> None:
        """List the class's pods unless a listing asked for at `since` or later is known."""
        known = self._known(label)
        async with known.lock:
            await self._list(known, cluster, label, since)

    async def reserve(
        self,
        cluster: Cluster,
        label: str,
        job_id: int,
        labels: Labels,
        full: Callable[[list[Labels]], bool],
        since: float,
    ) -> Place:
        """Reserve a place for the job's pod unless it has one or `full` says the pods fill the class.

        The decision rests on a listing asked for at `since` or later (the caller's start, on `clock`).
        """
        known, job = self._known(label), str(job_id)
        async with known.lock:
            await self._list(known, cluster, label, since)
            place = _place(known.pods(), job, full)
            if place is Place.RESERVED:
                known.creating[job] = labels
            return place

    def created(self, label: str, job_id: int) -> None:
        """Count the job's pod as created (its create request was answered)."""
        known, job = self._known(label), str(job_id)
        labels = known.creating.pop(job, None)
        if labels is not None:
            known.created[job] = (self.clock(), labels)

    def release(self, label: str, job_id: int) -> None:
        """Give back a reserved place whose pod was not created."""
        self._known(label).creating.pop(str(job_id), None)

    def forget(self, job_id: int) -> None:
        """Stop counting the job's pod: it was deleted."""
        for known in self._classes.values():
            known.listed.pop(str(job_id), None)
            known.created.pop(str(job_id), None)

    async def _list(self, known: _Known, cluster: Cluster, label: str, since: float) -> None:
        """List the class's pods unless the last listing was asked for at `since` or later."""
        if known.listed_at is not None and known.listed_at >= since:
            return
        if known.failed is not None and known.failed[0] >= since:
            raise known.failed[1]  # the API server failed this caller's listing already: not again
        asked = self.clock()
        try:
            pods = await cluster.class_pods(label)
        except Exception as error:
            known.failed = (asked, error)
            raise
        known.failed = None
        known.listed = {labels.get(JOB_LABEL) or f"unlabelled-{i}": labels for i, labels in enumerate(pods)}
        known.listed_at = asked
        # A pod created before the listing was asked for is in it; a later one may not be: keep counting it.
        known.created = {job: seen for job, seen in known.created.items() if seen[0] >= asked}


def _place(pods: dict[str, Labels], job: str, full: Callable[[list[Labels]], bool]) -> Place:
    if job in pods:
        return Place.EXISTS
    return Place.FULL if full(list(pods.values())) else Place.RESERVED

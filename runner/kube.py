"""The Kubernetes calls of the runner feature, behind a Protocol; the real one uses the official client."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from kubernetes import client

from bot.kube_api import METADATA_ONLY, KubeApi

MANAGED = "app.kubernetes.io/managed-by=orbit"
CLASS_LABEL = "orbit.dev/class"


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

    def create_pod(self, manifest: dict[str, Any]) -> tuple[str, bool]:
        """Create the pod; return its uid and whether it is new (an existing one is returned as is)."""
        ...

    def create_secret(self, manifest: dict[str, Any]) -> None:
        """Create the secret; one that exists already counts as success."""
        ...

    def delete_runner(self, name: str) -> None:
        """Delete the pod and the secret of that name; missing ones count as deleted."""
        ...

    def runner_pods(self) -> list[RunnerPod]:
        """Return every pod orbit manages."""
        ...

    def class_pods(self, label: str) -> list[dict[str, str]]:
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

    def create_pod(self, manifest: dict[str, Any]) -> tuple[str, bool]:
        """Create the pod or return the existing one's uid."""
        created = self._expect("POST", "pods", "", "create pod", 409, body=manifest)
        if created is not None:
            return str(created["metadata"]["uid"]), True
        existing = self._expect("GET", "pods", manifest["metadata"]["name"], "read pod")
        return str(existing["metadata"]["uid"]), False

    def create_secret(self, manifest: dict[str, Any]) -> None:
        """Create the secret, tolerating one that exists."""
        self._expect("POST", "secrets", "", "create secret", 409, body=manifest)

    def delete_runner(self, name: str) -> None:
        """Delete pod and secret by name."""
        for kind in ("pods", "secrets"):
            self._expect("DELETE", kind, name, f"delete {kind[:-1]}", 404)

    def runner_pods(self) -> list[RunnerPod]:
        """List the pods orbit manages."""
        found = self._expect("GET", "pods", "", "list pods", query=[("labelSelector", MANAGED)])
        return [_runner_pod(pod) for pod in found.get("items") or []]

    def class_pods(self, label: str) -> list[dict[str, str]]:
        """Return the labels of the runner pods of one class (their metadata only)."""
        selector = [("labelSelector", f"{MANAGED},{CLASS_LABEL}={label}")]
        found = self._expect("GET", "pods", "", "list pods", query=selector, headers=METADATA_ONLY)
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

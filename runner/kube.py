"""The Kubernetes calls of the runner feature, behind a Protocol; the real one uses the official client."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from bot.errors import PermanentError, TemporaryError

MANAGED = "app.kubernetes.io/managed-by=orbit"


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

    def pod_events(self, name: str) -> list[str]:
        """Return the messages of the pod's events, oldest first."""
        ...


def translate(error: ApiException, action: str) -> Exception:
    """Return the temporary or permanent error of a failed API call."""
    status = int(error.status or 0)
    if status == 0 or status >= 500 or status == 429:
        return TemporaryError(f"Kubernetes answered {status or 'nothing'} to {action}")
    return PermanentError(f"Kubernetes answered {status} to {action}: {error.reason}")


class KubeCluster:
    """`Cluster` over the official client: in-cluster configuration, else the kubeconfig."""

    def __init__(self, namespace: str, api: client.CoreV1Api | None = None) -> None:
        self.namespace = namespace
        self.api = api or client.CoreV1Api(client.ApiClient(load_configuration()))

    def create_pod(self, manifest: dict[str, Any]) -> tuple[str, bool]:
        """Create the pod or return the existing one's uid."""
        try:  # raw responses: building the client's model objects costs more than the call
            created = self.api.create_namespaced_pod(self.namespace, manifest, _preload_content=False)
            return str(orjson.loads(created.data)["metadata"]["uid"]), True
        except ApiException as error:
            if error.status != 409:
                raise translate(error, "create pod") from error
        except HTTPError as error:
            raise TemporaryError(f"cannot reach Kubernetes: {type(error).__name__}") from error
        existing = self._call(
            "read pod", self.api.read_namespaced_pod, manifest["metadata"]["name"], self.namespace
        )
        return str(existing.metadata.uid), False

    def create_secret(self, manifest: dict[str, Any]) -> None:
        """Create the secret, tolerating one that exists."""
        try:
            self.api.create_namespaced_secret(self.namespace, manifest, _preload_content=False)
        except ApiException as error:
            if error.status != 409:
                raise translate(error, "create secret") from error

    def delete_runner(self, name: str) -> None:
        """Delete pod and secret by name."""
        for kind, delete in (
            ("pod", self.api.delete_namespaced_pod),
            ("secret", self.api.delete_namespaced_secret),
        ):
            try:
                delete(name, self.namespace, _preload_content=False)
            except ApiException as error:
                if error.status != 404:
                    raise translate(error, f"delete {kind}") from error

    def runner_pods(self) -> list[RunnerPod]:
        """List the pods orbit manages (raw JSON: the client's model objects are slow to build)."""
        response = self._call(
            "list pods",
            self.api.list_namespaced_pod,
            self.namespace,
            label_selector=MANAGED,
            _preload_content=False,
        )
        return [_runner_pod(pod) for pod in orjson.loads(response.data).get("items") or []]

    def pod_events(self, name: str) -> list[str]:
        """Return the messages of the pod's events."""
        events = self._call(
            "list events",
            self.api.list_namespaced_event,
            self.namespace,
            field_selector=f"involvedObject.name={name}",
        )
        return [str(event.message) for event in events.items if event.message]

    def _call(self, action: str, method: Any, *args: Any, **kwargs: Any) -> Any:  # client objects
        try:
            return method(*args, **kwargs)
        except ApiException as error:
            raise translate(error, action) from error
        except HTTPError as error:
            raise TemporaryError(f"cannot reach Kubernetes: {type(error).__name__}") from error


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
    )


def load_configuration() -> client.Configuration:
    """Return the in-cluster configuration, else the kubeconfig's."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.Configuration.get_default_copy()

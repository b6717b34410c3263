"""The served model's objects on Kubernetes, through the official client.

Server-side apply with orbit's field manager, reads, deletes, lists by label (metadata only), the
environment's pods, and requests to the model through the API server's service proxy (the smoke test).
"""

from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client

from bot.kube_api import METADATA_ONLY, KubeApi
from deploy.manifests import FIELD_MANAGER

COLLECTIONS = {
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments",
    "Service": "/api/v1/namespaces/{namespace}/services",
    "Ingress": "/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses",
    "HorizontalPodAutoscaler": "/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets",
    "Pod": "/api/v1/namespaces/{namespace}/pods",
}
Files = dict[str, tuple[str, bytes]]  # field -> (file name, content); the type follows the name


@dataclass(frozen=True)
class ProxyAnswer:
    """What the model answered through the API server's service proxy."""

    status: int
    body: bytes


class ModelCluster(Protocol):
    """The served model's objects in one namespace."""

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create or update the object by server-side apply; return it as stored."""
        ...

    def read(self, kind: str, name: str) -> dict[str, Any] | None:
        """Return the object, or None when it does not exist."""
        ...

    def delete(self, kind: str, name: str) -> None:
        """Delete the object; a missing one counts as deleted."""
        ...

    def list_metadata(self, kind: str, label_selector: str) -> list[dict[str, Any]]:
        """Return the metadata of the objects of a kind whose labels match (`key=value,...`)."""
        ...

    def pods(self, instance: str) -> list[dict[str, Any]]:
        """Return the pods of an environment's Deployment."""
        ...

    def proxy(self, service: str, method: str, path: str, files: Files | None = None) -> ProxyAnswer:
        """Send a request (files as multipart) to the Service through the API server; return the answer."""
        ...


class KubeModelCluster:
    """`ModelCluster` over the official client's ApiClient (raw JSON in and out)."""

    def __init__(self, namespace: str, api: client.ApiClient | None = None) -> None:
        self.namespace = namespace
        self.http = KubeApi(api)

    def _path(self, kind: str, name: str = "") -> str:
        base = COLLECTIONS[kind].format(namespace=self.namespace)
        return f"{base}/{name}" if name else base

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Apply with orbit's field manager, taking over fields another manager set."""
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        stored: dict[str, Any] = self.http.expect(
            "PATCH",
            self._path(kind, name),
            f"apply {kind} {name}",
            body=manifest,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        return stored

    def read(self, kind: str, name: str) -> dict[str, Any] | None:
        """Return the object, or None."""
        found: dict[str, Any] | None = self.http.expect(
            "GET", self._path(kind, name), f"read {kind} {name}", 404
        )
        return found

    def delete(self, kind: str, name: str) -> None:
        """Delete the object; 404 counts as deleted."""
        self.http.expect("DELETE", self._path(kind, name), f"delete {kind} {name}", 404)

    def list_metadata(self, kind: str, label_selector: str) -> list[dict[str, Any]]:
        """Return the matching objects' metadata: the API server sends no spec or status."""
        query = [("labelSelector", label_selector)]
        found = self.http.expect("GET", self._path(kind), f"list {kind}", query=query, headers=METADATA_ONLY)
        return [dict(item.get("metadata") or {}) for item in found.get("items") or []]

    def pods(self, instance: str) -> list[dict[str, Any]]:
        """Return the pods labelled with the environment's instance."""
        selector = [("labelSelector", f"app.kubernetes.io/instance={instance}")]
        found = self.http.expect("GET", self._path("Pod"), "list pods", query=selector)
        items: list[dict[str, Any]] = found.get("items") or []
        return items

    def proxy(self, service: str, method: str, path: str, files: Files | None = None) -> ProxyAnswer:
        """Send a request through `/services/<name>:http/proxy/`; any HTTP status is an answer."""
        options: dict[str, Any] = {}
        if files:
            options = {"header_params": {"Content-Type": "multipart/form-data"}, "files": files}
        url = f"/api/v1/namespaces/{self.namespace}/services/{service}:http/proxy/{path.lstrip('/')}"
        status, data = self.http.request(method, url, f"{method} {path} through the service proxy", **options)
        return ProxyAnswer(status, data)

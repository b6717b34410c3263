"""A Kubernetes API server double over real HTTP: namespaced pods, secrets and events.

Stateful where orbit's tests need the real semantics that kmock lacks: uid and resourceVersion,
409 AlreadyExists, 404 NotFound, equality label selectors, field selectors on events, and garbage
collection of objects owned by a deleted pod.
"""

import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from tests.serving import JSONResponse, serve_in_thread

KINDS = {"pods": "Pod", "secrets": "Secret", "events": "Event"}


@dataclass
class KubeState:
    """Objects by (kind, namespace, name), every request seen, and faults to inject."""

    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[float, str, str]] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    fail_next_create: list[int] = field(default_factory=list)
    version: int = 0
    behaviour: dict[str, str] = field(default_factory=dict)  # image -> how its rollout goes
    serving: dict[str, str] = field(default_factory=dict)  # Deployment -> behaviour of what it serves
    applied: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    metadata_lists: int = 0  # lists answered with each object's metadata only

    def of(self, kind: str, namespace: str = "orbit") -> dict[str, dict[str, Any]]:
        return {name: obj for (k, ns, name), obj in self.objects.items() if k == kind and ns == namespace}

    def add_event(self, pod: str, message: str, namespace: str = "orbit") -> None:
        name = f"{pod}.{uuid.uuid4().hex[:8]}"
        self.objects[("events", namespace, name)] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {"kind": "Pod", "name": pod},
            "message": message,
            "reason": "FailedScheduling",
        }

    def set_status(self, pod: str, namespace: str = "orbit", **status: Any) -> None:
        self.objects[("pods", namespace, pod)]["status"] = status

    def set_waiting(self, pod: str, reason: str, namespace: str = "orbit") -> None:
        """Report the runner container as waiting, as the kubelet does (ImagePullBackOff, ...)."""
        container = {
            "name": "runner",
            "image": "i",
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": reason}},
        }
        self.set_status(pod, namespace, phase="Pending", containerStatuses=[container])


def _status(code: int, reason: str, message: str) -> JSONResponse:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "code": code,
        "message": message,
    }
    return JSONResponse(body, status_code=code)


def _matches(obj: dict[str, Any], label_selector: str | None, field_selector: str | None) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, (label_selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    for term in filter(None, (field_selector or "").split(",")):
        key, _, value = term.partition("=")
        current: Any = obj
        for part in key.split("."):
            current = current.get(part, {}) if isinstance(current, dict) else {}
        if current != value:
            return False
    return True


def make_app(state: KubeState) -> Starlette:
    """Return the double's ASGI app."""

    def fault() -> JSONResponse | None:
        if state.fail_next:
            code = state.fail_next.pop(0)
            return _status(code, "InternalError" if code >= 500 else "Conflict", "injected failure")
        return None

    async def collection(request: Request) -> JSONResponse:
        kind, namespace = request.path_params["kind"], request.path_params["namespace"]
        state.requests.append((time.monotonic(), request.method, f"{kind}"))
        if (failed := fault()) is not None:
            return failed
        if request.method == "GET":
            items = [
                obj
                for obj in state.of(kind, namespace).values()
                if _matches(
                    obj, request.query_params.get("labelSelector"), request.query_params.get("fieldSelector")
                )
            ]
            if "as=PartialObjectMetadataList" in request.headers.get("accept", ""):
                state.metadata_lists += 1
                return JSONResponse(_metadata_list(items))
            return JSONResponse(
                {"apiVersion": "v1", "kind": f"{KINDS[kind]}List", "metadata": {}, "items": items}
            )
        if state.fail_next_create:
            return _status(state.fail_next_create.pop(0), "Forbidden", "injected failure on create")
        obj = await request.json()
        name = obj["metadata"]["name"]
        state.requests.append((time.monotonic(), "CREATE", f"{kind}/{name}"))
        if (kind, namespace, name) in state.objects:
            return _status(409, "AlreadyExists", f'{kind} "{name}" already exists')
        state.version += 1
        obj["metadata"].update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            resourceVersion=str(state.version),
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        if kind == "pods":
            obj["status"] = {"phase": "Pending"}
        state.objects[(kind, namespace, name)] = obj
        return JSONResponse(obj, status_code=201)

    async def item(request: Request) -> JSONResponse:
        kind, namespace, name = (request.path_params[k] for k in ("kind", "namespace", "name"))
        state.requests.append((time.monotonic(), request.method, f"{kind}/{name}"))
        if (failed := fault()) is not None:
            return failed
        obj = state.objects.get((kind, namespace, name))
        if obj is None:
            return _status(404, "NotFound", f'{kind} "{name}" not found')
        if request.method == "DELETE":
            del state.objects[(kind, namespace, name)]
            _collect_garbage(state, obj["metadata"]["uid"])
            return JSONResponse(obj)  # as the API server does: the object, now being deleted
        return JSONResponse(obj)

    async def seen(_: Request) -> JSONResponse:
        return JSONResponse([list(entry) for entry in state.requests])

    from tests.kube_apply_double import apply_routes

    return Starlette(
        routes=[
            *apply_routes(state),
            Route("/_requests", seen),
            Route("/api/v1/namespaces/{namespace}/{kind}", collection, methods=["GET", "POST"]),
            Route("/api/v1/namespaces/{namespace}/{kind}/{name}", item, methods=["GET", "DELETE"]),
        ]
    )


def app() -> Starlette:
    """Return a double with fresh state (for `uvicorn --factory` in its own process)."""
    return make_app(KubeState())


def _metadata_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the list as the API server sends it to a client that asks for metadata only."""
    meta = {"apiVersion": "meta.k8s.io/v1"}
    return {
        **meta,
        "kind": "PartialObjectMetadataList",
        "metadata": {},
        "items": [{**meta, "kind": "PartialObjectMetadata", "metadata": obj["metadata"]} for obj in items],
    }


def _collect_garbage(state: KubeState, owner_uid: str) -> None:
    for key, obj in list(state.objects.items()):
        owners = obj["metadata"].get("ownerReferences") or []
        if any(owner.get("uid") == owner_uid for owner in owners):
            del state.objects[key]


def serve_kube(state: KubeState) -> AbstractContextManager[str]:
    """Serve the double on localhost in a thread; the context yields its base URL."""
    return serve_in_thread(make_app(state))


def write_kubeconfig(path: Path, url: str) -> Path:
    """Write a kubeconfig whose only cluster is the double at `url`, as `orbit serve` would read it."""
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: double, cluster: {{server: "{url}"}}}}]
users: [{{name: orbit, user: {{}}}}]
contexts: [{{name: double, context: {{cluster: double, user: orbit}}}}]
current-context: double
"""
    )
    return path

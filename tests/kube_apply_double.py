"""The Kubernetes double's routes for the served model: server-side apply of Deployments, Services,
Ingresses, autoscalers and disruption budgets; lists by equality label selector (whole objects, or
their metadata only); a simulated rollout per image; the service proxy.

What a rollout does depends on the image (`KubeState.behaviour`): `ready` (default) rolls out at
once, `stuck` never becomes available, `crashloop` restarts its container, `bad-predict` passes
/readyz but answers /predict with 500, `ignores-key` serves without checking the API key its
Deployment passes it. A container whose Secret (`secretKeyRef`) is missing waits in
CreateContainerConfigError, as the kubelet has it.

Server-side apply is faithful where the rollout depends on it: a spec field orbit applied before and
omits now is removed (then defaulted again: a Deployment's `replicas` to 1), while one that another
manager set (`scale`, as the autoscaler does) or the API defaulted stays. Each object's
`managedFields` says which top-level spec fields orbit owns.

These routes are served by `tests.kube_double.make_app`, whose middleware records every request as
the RBAC check a real API server makes, into the same process-wide `ACCESSES` as the runner routes;
an apply of an object that does not exist yet records `create` as well as `patch`.
"""

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.kube_double import KubeState, _matches, _metadata_list, _status
from tests.serving import JSONResponse

GROUPS = {
    "deployments": "/apis/apps/v1",
    "services": "/api/v1",
    "ingresses": "/apis/networking.k8s.io/v1",
    "horizontalpodautoscalers": "/apis/autoscaling/v2",
    "poddisruptionbudgets": "/apis/policy/v1",
}


MANAGER = "orbit"
API_KEY_ENV = "MODEL_API_KEY"


def _owned(stored: dict[str, Any], manager: str = MANAGER) -> set[str]:
    """Return the top-level spec fields `manager` owns in a stored object."""
    for entry in stored.get("metadata", {}).get("managedFields") or []:
        if entry["manager"] == manager:
            return {field.removeprefix("f:") for field in entry["fieldsV1"].get("f:spec", {})}
    return set()


def _managed(stored: dict[str, Any], manager: str, fields: set[str], operation: str) -> list[dict[str, Any]]:
    """Return the object's managedFields with `manager` owning `fields`, taken from any other manager."""
    entries = []
    for entry in stored.get("metadata", {}).get("managedFields") or []:
        if entry["manager"] == manager:
            continue
        left = {
            f: v for f, v in entry["fieldsV1"].get("f:spec", {}).items() if f.removeprefix("f:") not in fields
        }
        entries.append({**entry, "fieldsV1": {"f:spec": left}})
    owned: dict[str, Any] = {"f:spec": {f"f:{field}": {} for field in sorted(fields)}}
    return [*entries, {"manager": manager, "operation": operation, "fieldsV1": owned}]


def _default(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Fill in what the API server defaults (the fields the tests read)."""
    return {"replicas": 1, **spec} if kind == "deployments" else spec


def _merge(kind: str, stored: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    """Apply orbit's intent as server-side apply does (at the spec's top level): what orbit applied
    replaces, what orbit applied before and omits now goes, what others set or the API defaulted stays."""
    intent = applied.get("spec", {})
    gone = _owned(stored) - set(intent)
    kept = {k: v for k, v in stored.get("spec", {}).items() if k not in intent and k not in gone}
    metadata = {**stored.get("metadata", {}), **applied["metadata"]}
    metadata["managedFields"] = _managed(stored, MANAGER, set(intent), "Apply")
    merged = {**stored, **{k: v for k, v in applied.items() if k != "status"}, "metadata": metadata}
    if "spec" in applied or "spec" in stored:
        merged["spec"] = _default(kind, {**kept, **intent})
    return merged


def scale(state: KubeState, name: str, replicas: int, namespace: str = "models") -> None:
    """Scale a Deployment as the autoscaler does: an update of its scale, which takes `replicas` over."""
    obj = state.objects[("deployments", namespace, name)]
    obj["spec"]["replicas"] = replicas
    metadata = obj["metadata"]
    metadata["managedFields"] = _managed(obj, "kube-controller-manager", {"replicas"}, "Update")
    metadata["generation"] += 1
    _simulate(state, namespace, obj)


def _missing_secret(state: KubeState, namespace: str, container: dict[str, Any]) -> str | None:
    for variable in container.get("env") or []:
        reference = (variable.get("valueFrom") or {}).get("secretKeyRef")
        if reference and ("secrets", namespace, reference["name"]) not in state.objects:
            return str(reference["name"])
    return None


def _pod_container(image: str, behaviour: str, available: bool, missing: str | None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "model", "image": image, "restartCount": 0, "ready": available}
    container["state"] = {"running": {}} if available else {"waiting": {"reason": "ContainerCreating"}}
    if behaviour == "crashloop":
        container.update(restartCount=4, state={"waiting": {"reason": "CrashLoopBackOff"}})
    if missing:
        waiting = {"reason": "CreateContainerConfigError", "message": f'secret "{missing}" not found'}
        container["state"] = {"waiting": waiting}
    return container


def _pod_of(key: tuple[str, str, str], found: dict[str, Any], namespace: str, instance: str) -> bool:
    labels = found["metadata"].get("labels") or {}
    return key[:2] == ("pods", namespace) and labels.get("app.kubernetes.io/instance") == instance


def _simulate(state: KubeState, namespace: str, obj: dict[str, Any]) -> None:
    """Roll the Deployment's pods out as its image's behaviour says."""
    name, spec = obj["metadata"]["name"], obj["spec"]
    model = spec["template"]["spec"]["containers"][0]
    image = model["image"]
    behaviour = state.behaviour.get(image, "ready")
    wanted = int(spec["replicas"])
    missing = _missing_secret(state, namespace, model)
    instance = spec["selector"]["matchLabels"]["app.kubernetes.io/instance"]
    for key in [key for key, found in state.objects.items() if _pod_of(key, found, namespace, instance)]:
        del state.objects[key]  # the old ReplicaSet's pods (by selector: a preview's are not production's)
    serving = behaviour in ("ready", "bad-predict", "ignores-key") and not missing
    available = wanted if serving else 0
    for index in range(wanted):
        pod = f"{name}-{uuid.uuid4().hex[:5]}-{index}"
        container = _pod_container(image, behaviour, available > 0, missing)
        state.objects[("pods", namespace, pod)] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod,
                "namespace": namespace,
                "labels": dict(spec["template"]["metadata"]["labels"]),
            },
            "status": {"phase": "Running" if available else "Pending", "containerStatuses": [container]},
        }
    obj["status"] = {
        "observedGeneration": obj["metadata"]["generation"],
        "replicas": wanted,
        "updatedReplicas": wanted,
        "readyReplicas": available,
        "availableReplicas": available,
    }
    state.serving[name] = behaviour if not missing else "stuck"


def _keyed(state: KubeState, namespace: str, name: str) -> bool:
    """Return whether the Service's Deployment passes its model an API key to check."""
    found = state.objects.get(("deployments", namespace, name)) or {}
    containers = found.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}]
    return any(variable["name"] == API_KEY_ENV for variable in containers[0].get("env") or [])


def apply_routes(state: KubeState) -> list[Route]:
    """Return the routes, bound to `state`."""

    async def apply(request: Request) -> Response:
        kind, namespace, name = (request.path_params[k] for k in ("kind", "namespace", "name"))
        state.requests.append((time.monotonic(), request.method, f"{kind}/{name}"))
        if state.fail_next:
            code = state.fail_next.pop(0)
            return _status(code, "Conflict" if code == 409 else "InternalError", "injected failure")
        if request.method == "GET":
            found = state.objects.get((kind, namespace, name))
            return JSONResponse(found) if found else _status(404, "NotFound", f'{kind} "{name}" not found')
        if request.method == "DELETE":
            found = state.objects.pop((kind, namespace, name), None)
            if kind == "deployments":
                state.serving.pop(name, None)
            return JSONResponse(found) if found else _status(404, "NotFound", f'{kind} "{name}" not found')
        if request.headers.get("content-type") != "application/apply-patch+yaml":
            return _status(415, "UnsupportedMediaType", "only server-side apply is served here")
        if request.query_params.get("fieldManager") != "orbit":
            return _status(422, "Invalid", "fieldManager is required for apply patch")
        applied = json.loads(await request.body())
        stored = state.objects.get((kind, namespace, name))
        state.version += 1
        obj = _merge(kind, stored or {}, applied)
        generation = int((stored or {}).get("metadata", {}).get("generation", 0))
        changed = stored is None or stored.get("spec") != obj.get("spec")
        created = (stored or {}).get("metadata", {}).get("creationTimestamp")
        obj["metadata"].update(
            namespace=namespace,
            creationTimestamp=created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            uid=(stored or {}).get("metadata", {}).get("uid") or str(uuid.uuid4()),
            resourceVersion=str(state.version),
            generation=generation + 1 if changed else generation,
        )
        state.applied.append((kind, name, applied))
        if kind == "deployments" and changed:
            _simulate(state, namespace, obj)
        state.objects[(kind, namespace, name)] = obj
        return JSONResponse(obj, status_code=201 if stored is None else 200)

    async def listed(request: Request) -> Response:
        kind, namespace = request.path_params["kind"], request.path_params["namespace"]
        state.requests.append((time.monotonic(), "LIST", kind))
        if state.fail_next:
            return _status(state.fail_next.pop(0), "InternalError", "injected failure")
        selector = request.query_params.get("labelSelector")
        items = [obj for obj in state.of(kind, namespace).values() if _matches(obj, selector, None)]
        if "as=PartialObjectMetadataList" in request.headers.get("accept", ""):
            state.metadata_lists += 1
            return JSONResponse(_metadata_list(items))
        return JSONResponse({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items})

    async def proxy(request: Request) -> Response:
        name, path = request.path_params["service"], request.path_params["path"]
        state.requests.append((time.monotonic(), f"PROXY {request.method}", f"{name}/{path}"))
        behaviour = state.serving.get(name)
        if behaviour is None or ("services", request.path_params["namespace"], name) not in state.objects:
            return _status(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
        if path == "readyz":
            return Response(status_code=200 if behaviour in ("ready", "bad-predict", "ignores-key") else 503)
        if path == "predict" and request.method == "POST":
            checks_key = behaviour != "ignores-key" and _keyed(state, request.path_params["namespace"], name)
            if checks_key and "authorization" not in request.headers and "x-api-key" not in request.headers:
                return JSONResponse({"error": "this endpoint needs an API key"}, status_code=401)
            form = await request.form()
            if behaviour not in ("ready", "ignores-key") or "image" not in form:
                return JSONResponse({"error": "internal"}, status_code=500)
            return JSONResponse({"prediction": "Saturn", "probabilities": {"Saturn": 0.99}})
        return Response(status_code=404)

    routes = [
        route
        for prefix in dict.fromkeys(GROUPS.values())
        if prefix != "/api/v1"
        for route in (
            Route(f"{prefix}/namespaces/{{namespace}}/{{kind:str}}", listed, methods=["GET"]),
            Route(
                f"{prefix}/namespaces/{{namespace}}/{{kind:str}}/{{name}}",
                apply,
                methods=["GET", "PATCH", "DELETE"],
            ),
        )
    ]
    return [
        Route(
            "/api/v1/namespaces/{namespace}/services/{service}:http/proxy/{path:path}",
            proxy,
            methods=["GET", "POST"],
        ),
        Route("/api/v1/namespaces/{namespace}/{kind:str}/{name}", apply, methods=["PATCH"]),
        Route(
            "/api/v1/namespaces/{namespace}/services/{name}",
            _with_kind(apply, "services"),
            methods=["GET", "DELETE"],
        ),
        *routes,
    ]


def _with_kind(endpoint: Any, kind: str) -> Any:
    async def bound(request: Request) -> Response:
        request.path_params["kind"] = kind
        return await endpoint(request)  # type: ignore[no-any-return]

    return bound

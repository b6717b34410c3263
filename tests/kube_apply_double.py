"""The Kubernetes double's routes for the served model: server-side apply of Deployments, Services,
Ingresses, autoscalers and disruption budgets; a simulated rollout per image; the service proxy.

What a rollout does depends on the image (`KubeState.behaviour`): `ready` (default) rolls out at
once, `stuck` never becomes available, `crashloop` restarts its container, `bad-predict` passes
/readyz but answers /predict with 500.

These routes are served by `tests.kube_double.make_app`, whose middleware records every request as
the RBAC check a real API server makes, into the same process-wide `ACCESSES` as the runner routes;
an apply of an object that does not exist yet records `create` as well as `patch`.
"""

import json
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.kube_double import KubeState, _status
from tests.serving import JSONResponse

GROUPS = {
    "deployments": "/apis/apps/v1",
    "services": "/api/v1",
    "ingresses": "/apis/networking.k8s.io/v1",
    "horizontalpodautoscalers": "/apis/autoscaling/v2",
    "poddisruptionbudgets": "/apis/policy/v1",
}


def _merge(stored: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    """Apply the manager's whole intent (one manager owns every field here): replace spec, merge metadata."""
    metadata = {**stored.get("metadata", {}), **applied["metadata"]}
    return {**stored, **{k: v for k, v in applied.items() if k != "status"}, "metadata": metadata}


def _simulate(state: KubeState, namespace: str, obj: dict[str, Any]) -> None:
    """Roll the Deployment's pods out as its image's behaviour says."""
    name, spec = obj["metadata"]["name"], obj["spec"]
    image = spec["template"]["spec"]["containers"][0]["image"]
    behaviour = state.behaviour.get(image, "ready")
    wanted = int(spec.get("replicas", 1))
    for key in [k for k in state.objects if k[0] == "pods" and k[2].startswith(f"{name}-")]:
        del state.objects[key]
    available = wanted if behaviour in ("ready", "bad-predict") else 0
    for index in range(wanted):
        pod = f"{name}-{uuid.uuid4().hex[:5]}-{index}"
        container: dict[str, Any] = {
            "name": "model",
            "image": image,
            "restartCount": 0,
            "ready": available > 0,
        }
        container["state"] = {"running": {}} if available else {"waiting": {"reason": "ContainerCreating"}}
        if behaviour == "crashloop":
            container.update(restartCount=4, state={"waiting": {"reason": "CrashLoopBackOff"}})
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
    state.serving[name] = behaviour


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
        obj = _merge(stored or {}, applied)
        generation = int((stored or {}).get("metadata", {}).get("generation", 0))
        changed = stored is None or stored.get("spec") != applied.get("spec")
        obj["metadata"].update(
            namespace=namespace,
            uid=(stored or {}).get("metadata", {}).get("uid") or str(uuid.uuid4()),
            resourceVersion=str(state.version),
            generation=generation + 1 if changed else generation,
        )
        state.applied.append((kind, name, applied))
        if kind == "deployments" and changed:
            _simulate(state, namespace, obj)
        state.objects[(kind, namespace, name)] = obj
        return JSONResponse(obj, status_code=201 if stored is None else 200)

    async def proxy(request: Request) -> Response:
        name, path = request.path_params["service"], request.path_params["path"]
        state.requests.append((time.monotonic(), f"PROXY {request.method}", f"{name}/{path}"))
        behaviour = state.serving.get(name)
        if behaviour is None or ("services", request.path_params["namespace"], name) not in state.objects:
            return _status(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
        if path == "readyz":
            return Response(status_code=200 if behaviour in ("ready", "bad-predict") else 503)
        if path == "predict" and request.method == "POST":
            form = await request.form()
            if behaviour != "ready" or "image" not in form:
                return JSONResponse({"error": "internal"}, status_code=500)
            return JSONResponse({"prediction": "Saturn", "probabilities": {"Saturn": 0.99}})
        return Response(status_code=404)

    routes = [
        Route(
            f"{prefix}/namespaces/{{namespace}}/{{kind:str}}/{{name}}",
            apply,
            methods=["GET", "PATCH", "DELETE"],
        )
        for prefix in dict.fromkeys(GROUPS.values())
        if prefix != "/api/v1"
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

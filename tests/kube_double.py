"""A Kubernetes API server double over real HTTP: namespaced pods, secrets and events.

Stateful where orbit's tests need the real semantics that kmock lacks: uid and resourceVersion,
409 AlreadyExists, 404 NotFound, equality label selectors, field selectors on events, and garbage
collection of objects owned by a deleted pod.

Every request it (and `tests.kube_apply_double`) receives is also recorded, process-wide, as the RBAC
access a real API server would authorize (`ACCESSES`); `rbac_problems` compares what the tests used
with what `deploy/k8s` grants the bot (see the plugin in tests/conftest.py and tests/deploy/test_rbac.py).
"""

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import yaml
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.settings import Settings
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
    # What the API server grants the client (SelfSubjectAccessReview, and the reads below that check
    # it): None is what deploy/k8s grants the bot. A double given its own RBAC stands for another
    # identity (an admin's kubeconfig), so what it is asked is not recorded as the bot's use.
    rbac: set["Access"] | None = None
    namespaces: set[str] | None = None  # those that exist; None: those deploy/k8s creates
    nodes: list[dict[str, Any]] = field(default_factory=list)

    def of(self, kind: str, namespace: str = "orbit-runners") -> dict[str, dict[str, Any]]:
        return {name: obj for (k, ns, name), obj in self.objects.items() if k == kind and ns == namespace}

    def add_event(self, pod: str, message: str, namespace: str = "orbit-runners") -> None:
        name = f"{pod}.{uuid.uuid4().hex[:8]}"
        self.objects[("events", namespace, name)] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {"kind": "Pod", "name": pod},
            "message": message,
            "reason": "FailedScheduling",
        }

    def set_status(self, pod: str, namespace: str = "orbit-runners", **status: Any) -> None:
        self.objects[("pods", namespace, pod)]["status"] = status

    def set_waiting(self, pod: str, reason: str, namespace: str = "orbit-runners") -> None:
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
            *review_routes(state),
            Route("/api/v1/namespaces/{namespace}/{kind}", collection, methods=["GET", "POST"]),
            Route("/api/v1/namespaces/{namespace}/{kind}/{name}", item, methods=["GET", "DELETE"]),
        ],
        middleware=[Middleware(RecordAccess, state=state)],
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


# --- Authorization: what a real API server would check for each request, and what deploy/k8s grants ---

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "tests/k8s"  # the single overlay with the build runners: every grant the bot can have
APPLY_PATCH = "application/apply-patch+yaml"


class Access(NamedTuple):
    """One RBAC check: a verb on a resource in a namespace ("" for cluster-scoped objects).

    The resource is written as kubectl writes it: plural, `.group` unless in the core group, and
    `/subresource`: `pods`, `pods/log`, `services/proxy`, `deployments.apps`.
    """

    verb: str
    resource: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.verb} {self.resource} in {self.namespace or 'the cluster'}"


def resource_name(resource: str, group: str) -> str:
    """Return `pods`, `deployments.apps`, `deployments.apps/scale` from a rule's or a path's parts."""
    base, _, sub = resource.partition("/")
    return f"{base}{'.' + group if group else ''}{'/' + sub if sub else ''}"


@dataclass(frozen=True)
class ApiRequest:
    """A request to the API as the API server's request-info resolver reads it."""

    verb: str
    group: str
    resource: str  # with its subresource: pods/log
    namespace: str
    name: str


def api_request(method: str, path: str, query: dict[str, str]) -> ApiRequest | None:
    """Return what a request asks of the API, or None for a path that names no resource."""
    parts = [part for part in path.split("/") if part]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = ""
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    elif rest[:1] == ["namespaces"] and len(rest) == 2:
        namespace = rest[1]  # the Namespace object itself
    if not rest:
        return None
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    watch = query.get("watch", "").lower() in ("true", "1")
    verb = {
        "GET": "watch" if watch else ("get" if name else "list"),
        "HEAD": "get" if name else "list",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }.get(method.upper(), method.lower())
    return ApiRequest(verb, group, resource, namespace, name)


def accesses_of(
    method: str, path: str, query: dict[str, str], content_type: str, exists: bool
) -> list[Access]:
    """Return the checks the API server makes for a request.

    A server-side apply (`application/apply-patch+yaml`) of an object that does not exist creates
    it, and the API server then checks `create` as well as `patch`.
    """
    request = api_request(method, path, query)
    if request is None:
        return []
    resource = resource_name(request.resource, request.group)
    checks = [Access(request.verb, resource, request.namespace)]
    applying = request.verb == "patch" and content_type.partition(";")[0].strip() == APPLY_PATCH
    if applying and "/" not in request.resource and not exists:
        checks.append(Access("create", resource, request.namespace))
    return checks


class AccessLog:
    """Every access the doubles saw in this process, with the first test that made it."""

    def __init__(self) -> None:
        self.first_by: dict[Access, str] = {}
        self._captures: list[set[Access]] = []
        self._lock = threading.Lock()

    def record(self, access: Access) -> None:
        """Remember the access, for the session and for every open capture."""
        test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
        with self._lock:
            self.first_by.setdefault(access, test)
            for seen in self._captures:
                seen.add(access)

    @contextmanager
    def capture(self) -> Iterator[set[Access]]:
        """Collect the accesses made while the block runs (the requests are synchronous)."""
        seen: set[Access] = set()
        with self._lock:
            self._captures.append(seen)
        try:
            yield seen
        finally:
            with self._lock:
                self._captures = [other for other in self._captures if other is not seen]


ACCESSES = AccessLog()  # process-wide: every double of every test records here


class RecordAccess:
    """ASGI middleware: record each request's RBAC checks before the double answers it."""

    def __init__(self, app: ASGIApp, state: KubeState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
            headers = {
                key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]
            }
            request = api_request(scope["method"], scope["path"], query)
            exists = request is not None and (
                (request.resource, request.namespace, request.name) in self.state.objects
            )
            for access in accesses_of(
                scope["method"], scope["path"], query, headers.get("content-type", ""), exists
            ):
                if self.state.rbac is None and access not in EVERY_IDENTITY:
                    ACCESSES.record(access)
        await self.app(scope, receive, send)


@cache
def render(folder: Path = K8S) -> tuple[dict[str, Any], ...]:
    """Return the objects `kubectl kustomize` renders from `folder`."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl is needed to render deploy/k8s")
    output = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=True)
    return tuple(doc for doc in yaml.safe_load_all(output.stdout) if doc)


def bot_deployment(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Return the bot's Deployment that acts on the cluster: the workers', where the ingest runs apart."""
    (deployment,) = [
        o
        for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") in ("bot", "worker")
        and role_of(o) != "ingest"
    ]
    return deployment


def role_of(deployment: dict[str, Any]) -> str:
    """Return what a bot Deployment's pods run (ORBIT_ROLE: ingest, worker or all)."""
    env = deployment["spec"]["template"]["spec"]["containers"][0].get("env") or []
    return next((str(e["value"]) for e in env if e["name"] == "ORBIT_ROLE"), "all")


def bot_identity(objects: Iterable[dict[str, Any]]) -> tuple[str, str]:
    """Return the bot's namespace and service account."""
    deployment = bot_deployment(objects)
    return deployment["metadata"]["namespace"], deployment["spec"]["template"]["spec"]["serviceAccountName"]


def granted(objects: Iterable[dict[str, Any]]) -> set[Access]:
    """Return every access the rendered RBAC grants the bot's service account.

    Roles and ClusterRoles bound to it by RoleBindings (in the binding's namespace) and
    ClusterRoleBindings (everywhere: namespace "*"). A wildcard is refused: name each verb and resource.
    """
    objects = list(objects)
    namespace, account = bot_identity(objects)
    roles = {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
    }
    found: set[Access] = set()
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        where = binding["metadata"].get("namespace", "")
        subjects = binding.get("subjects") or []
        if not any(
            s.get("kind") == "ServiceAccount"
            and s.get("name") == account
            and s.get("namespace", where) == namespace
            for s in subjects
        ):
            continue
        ref = binding["roleRef"]
        role = roles.get((ref["kind"], where if ref["kind"] == "Role" else "", ref["name"]))
        if role is None:
            raise ValueError(
                f"{binding['metadata']['name']} binds {ref['kind']} {ref['name']}, which is not rendered"
            )
        scope = where if binding["kind"] == "RoleBinding" else "*"
        for rule in role.get("rules") or []:
            if rule.get("resourceNames") or rule.get("nonResourceURLs"):
                raise ValueError(
                    f"{ref['kind']} {ref['name']}: resourceNames and nonResourceURLs are not checked here"
                )
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        if "*" in (group, resource, verb):
                            raise ValueError(
                                f"{ref['kind']} {ref['name']} grants '*': name each verb and resource"
                            )
                        found.add(Access(verb, resource_name(resource, group), scope))
    return found


def deployed_namespaces(objects: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Map the namespaces the tests use to those of the rendered bot.

    Tests put runner pods and the served model in the settings' default namespaces
    (`ORBIT_KUBE_NAMESPACE`, `ORBIT_MODELS_NAMESPACE`); the bot's Deployment sets where they go.
    """
    deployment = bot_deployment(objects)
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env") or []}
    fields = Settings.model_fields
    mapping: dict[str, str] = {}
    for setting, variable in (
        ("kube_namespace", "ORBIT_KUBE_NAMESPACE"),
        ("models_namespace", "ORBIT_MODELS_NAMESPACE"),
    ):
        default = str(fields[setting].default)
        entry = env.get(variable, {"value": default})
        if "value" in entry:
            mapping[default] = str(entry["value"])
        elif entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            mapping[default] = deployment["metadata"]["namespace"]
        else:
            raise ValueError(f"{variable} is neither a value nor the pod's namespace")
    return mapping


def as_deployed(used: Iterable[Access], mapping: dict[str, str]) -> set[Access]:
    """Return the accesses with the tests' namespaces replaced by the deployed ones."""
    return {access._replace(namespace=mapping.get(access.namespace, access.namespace)) for access in used}


def covered(access: Access, grants: set[Access]) -> bool:
    """Return whether a grant allows the access (a ClusterRoleBinding's grants hold in every namespace)."""
    return access in grants or access._replace(namespace="*") in grants


def rbac_problems(
    used: dict[Access, str], objects: Iterable[dict[str, Any]], all_ran: bool
) -> tuple[list[str], list[str]]:
    """Return (used but not granted, granted but never used); the second only when `all_ran`.

    `used` maps each access, in the tests' namespaces, to the first test that made it.
    """
    objects = list(objects)
    mapping, grants = deployed_namespaces(objects), granted(objects)
    deployed: dict[Access, str] = {}
    for access, test in used.items():
        deployed.setdefault(access._replace(namespace=mapping.get(access.namespace, access.namespace)), test)
    missing = [
        f"{access}  (first by {test or 'no test'})"
        for access, test in sorted(deployed.items())
        if not covered(access, grants)
    ]
    unused = [
        str(grant) for grant in sorted(grants) if not any(covered(access, {grant}) for access in deployed)
    ]
    return missing, unused if all_ran else []


# --- What any identity may ask, and what a client may do: SelfSubjectAccessReview, namespaces, nodes ---

# Granted to every authenticated identity by Kubernetes' own bootstrap policy (system:basic-user),
# not by deploy/k8s: asking the API server what one may do.
EVERY_IDENTITY = {Access("create", "selfsubjectaccessreviews.authorization.k8s.io", "")}


def rbac_of(state: KubeState) -> set[Access]:
    """Return what the double grants its client: the state's RBAC, else deploy/k8s's for the bot."""
    return state.rbac if state.rbac is not None else granted(render())


def review_routes(state: KubeState) -> list[Route]:
    """Return `/version`, SelfSubjectAccessReview, and reads of Namespaces and Nodes that check RBAC."""

    def forbidden(access: Access) -> JSONResponse | None:
        if covered(access, rbac_of(state)):
            return None
        return _status(403, "Forbidden", f"forbidden: cannot {access}")

    async def version(_: Request) -> JSONResponse:
        return JSONResponse({"major": "1", "minor": "31", "gitVersion": "v1.31.0"})

    async def review(request: Request) -> JSONResponse:
        body = await request.json()
        asked = body["spec"]["resourceAttributes"]
        resource = "/".join(filter(None, (asked.get("resource", ""), asked.get("subresource", ""))))
        access = Access(
            asked["verb"], resource_name(resource, asked.get("group", "")), asked.get("namespace", "")
        )
        allowed = covered(access, rbac_of(state)) or access in EVERY_IDENTITY
        return JSONResponse({**body, "status": {"allowed": allowed}}, status_code=201)

    async def namespace(request: Request) -> JSONResponse:
        name = request.path_params["namespace"]
        if (refused := forbidden(Access("get", "namespaces", name))) is not None:
            return refused
        existing = state.namespaces
        if existing is None:
            existing = {o["metadata"]["name"] for o in render() if o["kind"] == "Namespace"}
        if name not in existing:
            return _status(404, "NotFound", f'namespaces "{name}" not found')
        return JSONResponse({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    async def nodes(_: Request) -> JSONResponse:
        if (refused := forbidden(Access("list", "nodes", ""))) is not None:
            return refused
        return JSONResponse({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": state.nodes})

    return [
        Route("/version", version),
        Route("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review, methods=["POST"]),
        Route("/api/v1/namespaces/{namespace}", namespace),
        Route("/api/v1/nodes", nodes),
    ]

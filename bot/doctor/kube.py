"""Kubernetes as the bot sees it: reachable, orbit's RBAC granted, namespaces, GPU nodes, images.

A least-privilege bot holds namespaced grants only: it may not read Namespaces, Nodes or the models'
Secrets. Each check asks the API server first (SelfSubjectAccessReview, which every authenticated
identity may send) and reads only what it is allowed to; what it may not read is said, not failed.
The checks are of the identity the client runs as: the bot's service account in its pod
(`kubectl -n orbit exec deploy/orbit -- orbit doctor`), the kubeconfig's user elsewhere.
"""

import re
from collections.abc import Callable
from functools import partial
from typing import Any

from kubernetes import client, config

from bot.doctor.check import Check, failed, passed, warned
from bot.doctor.rbac import MODELS, NEEDED, RUNNERS, Grant
from bot.errors import PermanentError, TemporaryError
from bot.kube_api import KubeApi, load_configuration
from bot.settings import Settings

REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
METADATA = {"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"}
OFF = {
    RUNNERS: "runner pods are off (ORBIT_RUNNERS_ENABLED)",
    MODELS: "deploys are off (they need ORBIT_REGISTRY and ORBIT_PUBLIC_DOMAIN)",
}
APPLY = "apply deploy/k8s (kubectl apply -k deploy/k8s/overlays/single)"
# The reference grammar of the distribution project (github.com/distribution/reference):
# [host[:port]/]path[:tag][@digest].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
IMAGE_REFERENCE = re.compile(
    rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


def kube_checks(settings: Settings) -> list[Check]:
    """Return the checks of the cluster; when it cannot be reached, the others say they were skipped."""
    try:
        api = KubeApi(client.ApiClient(load_configuration()))
    except (config.ConfigException, OSError) as error:
        return [
            failed(
                "Kubernetes",
                f"no configuration: not in a pod and no kubeconfig ({type(error).__name__})",
                "run it in the bot's pod, or point KUBECONFIG at the cluster",
            )
        ]
    reached = _reachable(api)
    if reached.ok is not True:
        return [reached]
    places = _places(settings)
    planned: list[tuple[str, Callable[[], Check]]] = [
        (f"RBAC in {namespace}", partial(rbac_check, api, place, namespace))
        for place, namespace in places.items()
    ]
    planned += [
        (f"RBAC for {place}", partial(warned, f"RBAC for {place}", f"skipped: {off}"))
        for place, off in OFF.items()
        if place not in places
    ]
    planned += [(f"namespace {ns}", partial(namespace_check, api, ns)) for ns in places.values()]
    planned += [
        ("GPU nodes", partial(gpu_nodes_check, api, settings)),
        ("runner images", partial(images_check, settings)),
        ("image pull secret", partial(pull_secret_check, api, settings)),
    ]
    return [reached, *(_guarded(name, check) for name, check in planned)]


def _guarded(name: str, check: Callable[[], Check]) -> Check:
    """Return the check's outcome, or its failure when the API server answered with an error."""
    try:
        return check()
    except (TemporaryError, PermanentError) as error:
        return failed(name, str(error), "try again; if it stays, check the API server")


def allowed(
    api: KubeApi, verb: str, resource: str, namespace: str = "", name: str = "", group: str = ""
) -> bool:
    """Return whether the API server lets this client do `verb` on `resource` (SelfSubjectAccessReview)."""
    base, _, sub = resource.partition("/")
    attributes = {"verb": verb, "group": group, "resource": base, "subresource": sub}
    attributes |= {"namespace": namespace, "name": name}
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {k: v for k, v in attributes.items() if v}},
    }
    answer = api.expect("POST", REVIEWS, "review access", body=body)
    return bool((answer or {}).get("status", {}).get("allowed"))


def rbac_check(api: KubeApi, place: str, namespace: str) -> Check:
    """Return whether every verb orbit needs in `namespace` is granted."""
    needed = [grant for grant in NEEDED if grant.place == place]
    denied = [grant for grant in needed if not _granted(api, grant, namespace)]
    name = f"RBAC in {namespace}"
    if denied:
        role = {RUNNERS: "orbit-runners", MODELS: "orbit-deployer"}[place]
        return failed(
            name,
            f"not granted: {', '.join(map(str, denied))}",
            f"{APPLY}: the Role {role} and its RoleBinding to the bot's service account",
        )
    return passed(name, f"the {len(needed)} verbs orbit uses are granted")


def namespace_check(api: KubeApi, namespace: str) -> Check:
    """Return whether `namespace` exists; "cannot tell" when this client may not read it.

    orbit is granted nothing cluster-wide, so it may not read Namespaces; its RBAC check in the
    namespace passes only where the namespace, and the RoleBinding in it, exist.
    """
    name = f"namespace {namespace}"
    if not allowed(api, "get", "namespaces", namespace, namespace):
        return warned(
            name,
            "cannot tell: orbit may not read Namespaces (it has no cluster-wide grant)",
            f"kubectl get namespace {namespace}",
        )
    status, _ = api.json("GET", f"/api/v1/namespaces/{namespace}", "read the namespace")
    if status == 404:
        return failed(name, "does not exist", f"{APPLY}, or set the namespace's setting to one that exists")
    if status >= 300:
        return warned(
            name, f"cannot tell: Kubernetes answered {status}", f"kubectl get namespace {namespace}"
        )
    return passed(name, "exists")


def gpu_nodes_check(api: KubeApi, settings: Settings) -> Check:
    """Return whether some node advertises the GPU resource; skipped when nodes may not be listed."""
    name, resource = "GPU nodes", settings.gpu_resource
    if not settings.runners_enabled:
        return warned(name, f"skipped: {OFF[RUNNERS]}")
    if not allowed(api, "list", "nodes"):
        return warned(name, "skipped: not allowed to list nodes", "kubectl describe nodes | grep " + resource)
    nodes = api.expect("GET", "/api/v1/nodes", "list nodes").get("items") or []
    with_gpus = [n for n in nodes if _quantity((n.get("status") or {}).get("allocatable", {}).get(resource))]
    if not with_gpus:
        return failed(
            name,
            f"none of {len(nodes)} nodes advertises {resource}",
            "install the GPU Operator (or the device plugin) on the GPU nodes;"
            " ORBIT_GPU_RESOURCE names the resource",
        )
    return passed(name, f"{len(with_gpus)} of {len(nodes)} nodes advertise {resource}")


def images_check(settings: Settings) -> Check:
    """Return whether the runner images are well-formed references (no registry is asked)."""
    images = {
        "ORBIT_RUNNER_IMAGE": settings.runner_image,
        "ORBIT_CPU_RUNNER_IMAGE": settings.cpu_runner_image,
    }
    bad = [variable for variable, image in images.items() if not IMAGE_REFERENCE.match(image)]
    if bad:
        return failed(
            "runner images",
            f"{', '.join(bad)} is not an image reference",
            "set it to HOST/REPOSITORY:TAG, e.g. ghcr.io/orbit/runner-gpu:1.4.0",
        )
    return passed(
        "runner images", f"{', '.join(images.values())} (the cluster's registry access is not checked)"
    )


def pull_secret_check(api: KubeApi, settings: Settings) -> Check:
    """Return whether ORBIT_IMAGE_PULL_SECRET exists in the models' namespace, when orbit may read it."""
    name, secret, namespace = "image pull secret", settings.image_pull_secret, settings.models_namespace
    if not secret:
        return passed(name, "none set (ORBIT_IMAGE_PULL_SECRET): images are pulled without credentials")
    if not allowed(api, "get", "secrets", namespace, secret):
        return warned(
            name,
            f"cannot tell whether {namespace}/{secret} exists: orbit may not read Secrets there",
            f"kubectl -n {namespace} get secret {secret}",
        )
    status, _ = api.json("GET", f"/api/v1/namespaces/{namespace}/secrets/{secret}", "read", headers=METADATA)
    if status == 404:
        return failed(
            name,
            f"{namespace}/{secret} does not exist",
            f"kubectl -n {namespace} create secret docker-registry {secret} --docker-server=REGISTRY ...",
        )
    return passed(name, f"{namespace}/{secret} exists")


def _reachable(api: KubeApi) -> Check:
    host = api.api.configuration.host
    try:
        version = api.expect("GET", "/version", "read the version")
    except (TemporaryError, PermanentError) as error:
        return failed(
            "Kubernetes", f"cannot reach {host}: {error}", "check the kubeconfig or the bot's network"
        )
    return passed("Kubernetes", f"{version.get('gitVersion', 'reachable')} at {host}")


def _places(settings: Settings) -> dict[str, str]:
    places = {}
    if settings.runners_enabled:
        places[RUNNERS] = settings.kube_namespace
    if settings.registry and settings.public_domain:  # deploys are on
        places[MODELS] = settings.models_namespace
    return places


def _granted(api: KubeApi, grant: Grant, namespace: str) -> bool:
    return allowed(api, grant.verb, grant.resource, namespace, group=grant.group)


def _quantity(value: Any) -> int:  # a Kubernetes quantity; GPUs are whole numbers
    """Return a whole-number quantity, 0 when absent or not a number."""
    return int(value) if isinstance(value, str | int) and str(value).isdigit() else 0

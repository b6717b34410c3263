"""The Kubernetes access orbit needs: the rules of the Roles that deploy/k8s binds to the bot.

A test keeps this list equal to deploy/k8s/base/runners/role.yaml and models/role.yaml.
"""

from typing import NamedTuple

RUNNERS, MODELS = "runners", "models"  # the namespaces of ORBIT_KUBE_NAMESPACE, ORBIT_MODELS_NAMESPACE


class Grant(NamedTuple):
    """One verb on one resource, in the runners' or the models' namespace."""

    verb: str
    group: str  # "" for the core group
    resource: str  # with its subresource, as a Role names it: services/proxy
    place: str  # RUNNERS or MODELS

    def __str__(self) -> str:
        group = f".{self.group}" if self.group else ""
        base, _, sub = self.resource.partition("/")
        return f"{self.verb} {base}{group}{'/' + sub if sub else ''}"


def _grants(place: str, group: str, resource: str, *verbs: str) -> list[Grant]:
    return [Grant(verb, group, resource, place) for verb in verbs]


NEEDED: tuple[Grant, ...] = (
    # runner/kube.py: the runner pods, their JIT secrets, the events that say why a pod is Pending
    *_grants(RUNNERS, "", "pods", "create", "get", "list", "delete"),
    *_grants(RUNNERS, "", "secrets", "create", "delete"),
    *_grants(RUNNERS, "", "events", "list"),
    # deploy/kube.py, deploy/rollout.py: server-side apply of the served model (each object read first,
    # to check which repository's it is), its rollout, the smoke test
    *_grants(MODELS, "apps", "deployments", "get", "list", "create", "patch", "delete"),
    *_grants(MODELS, "", "services", "get", "create", "patch", "delete"),
    *_grants(MODELS, "networking.k8s.io", "ingresses", "get", "create", "patch", "delete"),
    *_grants(MODELS, "autoscaling", "horizontalpodautoscalers", "get", "create", "patch"),
    *_grants(MODELS, "policy", "poddisruptionbudgets", "get", "create", "patch"),
    *_grants(MODELS, "", "pods", "list"),
    *_grants(MODELS, "", "services/proxy", "get", "create"),
)

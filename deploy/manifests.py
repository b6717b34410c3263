"""The served model's Kubernetes objects for one environment, as plain dicts applied server-side.

Every environment gets a Deployment, a Service and an Ingress; production also gets a
HorizontalPodAutoscaler and a PodDisruptionBudget.
"""

import json
from dataclasses import dataclass
from typing import Any

from bot.github.deployments import PRODUCTION
from model import MODEL_NAME

SERVICE = MODEL_NAME.replace("_", "-")  # the model's name as Kubernetes and DNS accept it
PORT = 3000  # bentoml serve
MANAGED_BY = "orbit"
FIELD_MANAGER = "orbit"
BENTOML_UID = 1034  # the user bentoml containerize images run as
SCRATCH = "/tmp"  # noqa: S108 - the pod's own emptyDir: the root filesystem is read-only


HISTORY = 10


@dataclass(frozen=True)
class Revision:
    """One rollout of an environment: what served, from which deployment and PR."""

    deployment_id: int
    sha: str
    image: str
    pull: int


@dataclass(frozen=True)
class Target:
    """What to roll out where."""

    service: str  # DNS-safe name of the model service
    environment: str  # production, or pr-<N>
    namespace: str
    image: str  # repository@sha256:digest
    sha: str
    deployment_id: int
    domain: str
    tls_issuer: str | None = None  # cert-manager ClusterIssuer
    ingress_class: str | None = None
    pull: int = 0
    history: tuple[Revision, ...] = ()  # what served before, oldest first (kept on the Deployment)

    @property
    def revision(self) -> Revision:
        """Return this rollout as a revision of the environment."""
        return Revision(self.deployment_id, self.sha, self.image, self.pull)

    @property
    def production(self) -> bool:
        """Return whether this is the production environment."""
        return self.environment == PRODUCTION

    @property
    def name(self) -> str:
        """Return the objects' name: the service, suffixed by a preview's environment."""
        return self.service if self.production else f"{self.service}-{self.environment}"

    @property
    def host(self) -> str:
        """Return the public host name."""
        return (
            f"{self.service}.{self.domain}"
            if self.production
            else f"{self.environment}.{self.service}.{self.domain}"
        )

    @property
    def url(self) -> str:
        """Return the public URL."""
        return f"https://{self.host}"


def labels(target: Target) -> dict[str, str]:
    """Return the labels every object of the environment carries."""
    return {
        "app.kubernetes.io/name": target.service,
        "app.kubernetes.io/instance": target.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "orbit.dev/environment": target.environment,
    }


def _metadata(target: Target, **extra: Any) -> dict[str, Any]:
    return {"name": target.name, "namespace": target.namespace, "labels": labels(target), **extra}


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures}


def _container(target: Target) -> dict[str, Any]:
    return {
        "name": "model",
        "image": target.image,
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": [{"name": "TMPDIR", "value": SCRATCH}, {"name": "BENTOML_DO_NOT_TRACK", "value": "true"}],
        "readinessProbe": _probe("/readyz", 5, 3),
        "livenessProbe": {**_probe("/livez", 10, 3), "initialDelaySeconds": 10},
        "startupProbe": _probe("/livez", 5, 36),  # three minutes to load the model
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"memory": "2Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": SCRATCH}],
    }


def deployment(target: Target) -> dict[str, Any]:
    """Return the Deployment: the image by digest, probes on /readyz and /livez, non-root."""
    selector = {"app.kubernetes.io/instance": target.name}
    annotations = {"orbit.dev/sha": target.sha, "orbit.dev/deployment-id": str(target.deployment_id)}
    history = [revision.__dict__ for revision in target.history[-HISTORY:]]
    metadata = _metadata(
        target,
        annotations={
            **annotations,
            "orbit.dev/pr": str(target.pull),
            "orbit.dev/history": json.dumps(history),
        },
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 2 if target.production else 1,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(target), "annotations": annotations},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": BENTOML_UID,
                        "runAsGroup": BENTOML_UID,
                        "fsGroup": BENTOML_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [_container(target)],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
                },
            },
        },
    }


def revisions(found: dict[str, Any]) -> tuple[Revision, ...]:
    """Return a stored Deployment's revisions, oldest first, the one serving last."""
    annotations = found["metadata"].get("annotations") or {}
    try:
        history = tuple(Revision(**entry) for entry in json.loads(annotations.get("orbit.dev/history", "[]")))
    except (TypeError, ValueError):
        history = ()
    current = Revision(
        int(annotations.get("orbit.dev/deployment-id", "0") or 0),
        annotations.get("orbit.dev/sha", ""),
        str(found["spec"]["template"]["spec"]["containers"][0]["image"]),
        int(annotations.get("orbit.dev/pr", "0") or 0),
    )
    return (*history, current)


def service(target: Target) -> dict[str, Any]:
    """Return the Service in front of the pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(target),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/instance": target.name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def ingress(target: Target) -> dict[str, Any]:
    """Return the Ingress for the public host, with TLS through the configured issuer."""
    annotations = {"cert-manager.io/cluster-issuer": target.tls_issuer} if target.tls_issuer else {}
    spec: dict[str, Any] = {
        "tls": [{"hosts": [target.host], "secretName": f"{target.name}-tls"}],
        "rules": [
            {
                "host": target.host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": target.name, "port": {"name": "http"}}},
                        }
                    ]
                },
            }
        ],
    }
    if target.ingress_class:
        spec["ingressClassName"] = target.ingress_class
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _metadata(target, annotations=annotations),
        "spec": spec,
    }


def autoscaler(target: Target) -> dict[str, Any]:
    """Return production's HorizontalPodAutoscaler: 2 to 6 replicas at 70 % CPU."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(target),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target.name},
            "minReplicas": 2,
            "maxReplicas": 6,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }


def disruption_budget(target: Target) -> dict[str, Any]:
    """Return production's PodDisruptionBudget: one pod always serves."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(target),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/instance": target.name}}},
    }


def manifests(target: Target) -> list[dict[str, Any]]:
    """Return every object of the environment, in the order they are applied."""
    objects = [deployment(target), service(target), ingress(target)]
    if target.production:
        objects += [autoscaler(target), disruption_budget(target)]
    return objects

"""The served model's Kubernetes objects for one environment, as plain dicts applied server-side.

Every environment gets a Deployment, a Service and an Ingress; production also gets a
HorizontalPodAutoscaler and a PodDisruptionBudget. Their names and hosts derive from the repository
being deployed (`service_name`), so the models of two repositories never share an object.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
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
API_KEY_ENV = "MODEL_API_KEY"  # the variable model/serve.py reads the endpoint's key from
API_KEY_FIELD = "api-key"  # the key of the Secret that holds it
PREVIEW_KEY_SUFFIX = "-preview"  # a preview's key: its own Secret, never production's (PR code runs there)

MAX_LABEL = 63  # a DNS label, a Kubernetes name or a label value
# Hex digits of sha256(owner/name): 64 bits, so that no one can search out a repository name whose
# objects and host are another repository's (32 bits fall to a GPU in minutes).
HASH_LENGTH = 16
# A preview's objects add `-pr-<N>` (N: up to 10 digits) and its TLS Secret `-tls` to the service name.
MAX_SERVICE = MAX_LABEL - len("-pr-") - 10 - len("-tls")
SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # DNS-1035: what a Service may be named
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
REPOSITORY = "orbit.dev/repository"  # label (label-safe value) and annotation (owner/name)
ENVIRONMENT = "orbit.dev/environment"  # label: production, or pr-<N>
# Annotation of a preview's Deployment: when it was last rolled out (UTC, ISO 8601); its time to live
# counts from there (deploy/previews.py), so each `/deploy` gives the preview a new lease.
DEPLOYED_AT = "orbit.dev/deployed-at"
TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"  # as Kubernetes writes creationTimestamp


def _digest(repository: str) -> str:
    """Return the repository's short hash; GitHub names are case-insensitive, so is the hash."""
    return hashlib.sha256(repository.lower().encode()).hexdigest()[:HASH_LENGTH]


def service_name(repository: str) -> str:
    """Return the model's object name for a repository (`owner/name`): a slug of the name, a hash.

    A DNS-1035 label of at most `MAX_SERVICE` characters: a name cut to fit, or the same name under
    another owner, still differs by the hash of the whole `owner/name`.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", repository.rpartition("/")[2].lower()).strip("-")
    if not slug[:1].isalpha():
        slug = f"m-{slug}"  # a Service name starts with a letter
    return f"{slug[: MAX_SERVICE - HASH_LENGTH - 1].rstrip('-')}-{_digest(repository)}"


def repository_label(repository: str) -> str:
    """Return `owner/name` as a label value: `owner.name`, or cut and hashed when it does not fit."""
    value = repository.lower().replace("/", ".")  # GitHub names are case-insensitive
    if len(value) <= MAX_LABEL and LABEL_VALUE.match(value):
        return value
    cut = re.sub(r"[^-A-Za-z0-9_.]", "-", value)[: MAX_LABEL - HASH_LENGTH - 1]
    return f"{cut.strip('-_.')}-{_digest(repository)}".lstrip("-")


def service_override_problem(name: str) -> str | None:
    """Return why a configured service name cannot name the model's objects, or None when it can."""
    if not SERVICE_NAME.match(name):
        return "must be a DNS label: lower-case letters, digits and '-', starting with a letter"
    if len(name) > MAX_SERVICE:
        return f"must be at most {MAX_SERVICE} characters (a preview adds -pr-<N>-tls)"
    return None


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

    service: str  # the model's object name, `service_name(repository)` unless configured
    repository: str  # owner/name, whose model this is
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
    pull_secret: str | None = None  # a docker-registry Secret for a private registry
    api_key_secret: str | None = None  # production's Secret whose `api-key` the endpoint asks of callers

    @property
    def revision(self) -> Revision:
        """Return this rollout as a revision of the environment."""
        return Revision(self.deployment_id, self.sha, self.image, self.pull)

    @property
    def production(self) -> bool:
        """Return whether this is the production environment."""
        return self.environment == PRODUCTION

    @property
    def key_secret(self) -> str | None:
        """Return the Secret the endpoint's key comes from: a preview's never is production's.

        A preview runs a pull request's code (a fork's, after a writer's `/deploy`), which can read its
        own key: it gets `<api_key_secret>-preview`, so it can neither learn nor use production's.
        """
        if self.api_key_secret is None or self.production:
            return self.api_key_secret
        return f"{self.api_key_secret}{PREVIEW_KEY_SUFFIX}"

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
        ENVIRONMENT: target.environment,
        REPOSITORY: repository_label(target.repository),
    }


def _metadata(target: Target, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": target.name,
        "namespace": target.namespace,
        "labels": labels(target),
        "annotations": {REPOSITORY: target.repository, **(annotations or {})},
    }


def repository_of(found: dict[str, Any]) -> str | None:
    """Return the repository a stored object serves, or None for one made before objects said so."""
    annotations = found["metadata"].get("annotations") or {}
    return annotations.get(REPOSITORY)


def serves_another(found: dict[str, Any] | None, repository: str) -> str | None:
    """Return the other repository a stored object serves, or None when it is free or this one's."""
    owner = repository_of(found) if found else None
    return owner if owner is not None and owner.lower() != repository.lower() else None


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures}


def _environment(target: Target) -> list[dict[str, Any]]:
    """Return the container's variables; the endpoint's key by reference only (the bot never reads it)."""
    env: list[dict[str, Any]] = [
        {"name": "TMPDIR", "value": SCRATCH},
        {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
    ]
    if target.key_secret:
        key = {"name": target.key_secret, "key": API_KEY_FIELD}
        env.append({"name": API_KEY_ENV, "valueFrom": {"secretKeyRef": key}})
    return env


def _container(target: Target) -> dict[str, Any]:
    return {
        "name": "model",
        "image": target.image,
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": _environment(target),
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


def _pod_spec(target: Target) -> dict[str, Any]:
    spec: dict[str, Any] = {
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
    }
    if target.pull_secret:
        spec["imagePullSecrets"] = [{"name": target.pull_secret}]
    return spec


def deployment(target: Target) -> dict[str, Any]:
    """Return the Deployment: the image by digest, probes on /readyz and /livez, non-root.

    Production's names no `replicas`: applied server-side, orbit then never owns the field and the
    autoscaler's count survives every deploy (a new Deployment starts at the API's default, 1, and the
    autoscaler raises it to its minimum). A preview has no autoscaler and one replica, and records when
    it was deployed (`DEPLOYED_AT`).
    """
    selector = {"app.kubernetes.io/instance": target.name}
    annotations = {"orbit.dev/sha": target.sha, "orbit.dev/deployment-id": str(target.deployment_id)}
    history = [revision.__dict__ for revision in target.history[-HISTORY:]]
    recorded = {**annotations, "orbit.dev/pr": str(target.pull), "orbit.dev/history": json.dumps(history)}
    if not target.production:  # only on the object's metadata: the pod template stays as it was
        recorded[DEPLOYED_AT] = datetime.now(UTC).strftime(TIMESTAMP)
    spec: dict[str, Any] = {} if target.production else {"replicas": 1}
    spec |= {
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "selector": {"matchLabels": selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": labels(target), "annotations": annotations},
            "spec": _pod_spec(target),
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(target, recorded),
        "spec": spec,
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
        "metadata": _metadata(target, annotations),
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

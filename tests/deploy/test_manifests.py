"""What the project ships for GitHub and Kubernetes passes the official schemas, linters and audits.

The workflows' own tests (zizmor, the Actions schema, the run contract, who holds which secret) are in
`tests/deploy/test_workflows.py`."""

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import validate

from tests.kube_double import granted

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    executable = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert executable, f"{name} is not installed"
    return subprocess.run([str(executable), *args], cwd=ROOT, capture_output=True, text=True, check=False)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_runner_dockerfile_passes_hadolint() -> None:
    result = tool("hadolint", "deploy/images/runner-gpu.Containerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def rendered(folder: str = "deploy/k8s/overlays/single") -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render deploy/k8s"
    output = subprocess.run(
        [kubectl, "kustomize", str(ROOT / folder)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(output.stdout) if doc]


NAMESPACES = {"bot": "orbit", "runners": "orbit-runners", "deployer": "models"}  # by component
# Every overlay renders and validates against each supported Kubernetes: tests/deploy/test_kustomize.py.


def test_bot_manifests_render_and_validate() -> None:
    objects = rendered()
    assert {o["kind"] for o in objects} >= {
        "Namespace",
        "Deployment",
        "Service",
        "ServiceAccount",
        "PersistentVolumeClaim",
        "ConfigMap",
        "Ingress",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
    }
    for manifest in objects:
        validate(manifest, "1.30.0", strict=True)
        labels = manifest["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/name") == "orbit", manifest["metadata"]["name"]
        assert labels.get("app.kubernetes.io/part-of") == "orbit", manifest["metadata"]["name"]
        namespace = NAMESPACES[labels["app.kubernetes.io/component"]]
        if manifest["kind"] == "Namespace":
            assert manifest["metadata"]["name"] == namespace
        else:
            assert manifest["metadata"]["namespace"] == namespace, manifest["metadata"]["name"]
    configmaps = [o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"]
    assert [name.rsplit("-", 1)[0] for name in configmaps] == ["orbit-settings"], (
        "the bot's settings only: the cluster's network settings stay local"
    )
    assert "CIDR" not in yaml.safe_dump(objects), "every placeholder replaced"


def test_the_role_grants_exactly_the_verbs_the_bot_uses() -> None:
    objects = rendered()
    grants: dict[str, dict[str, set[str]]] = {}
    for verb, resource, namespace in granted(objects):
        grants.setdefault(namespace, {}).setdefault(resource, set()).add(verb)
    assert grants == {
        "orbit-runners": {
            "pods": {"create", "get", "list", "delete"},
            "secrets": {"create", "delete"},
            "events": {"list"},
        },
        "models": {
            "deployments.apps": {"get", "list", "create", "patch", "delete"},  # list: previews expire
            "services": {"get", "create", "patch", "delete"},
            "ingresses.networking.k8s.io": {"get", "create", "patch", "delete"},
            "horizontalpodautoscalers.autoscaling": {"get", "create", "patch"},
            "poddisruptionbudgets.policy": {"get", "create", "patch"},
            "pods": {"list"},
            "services/proxy": {"get", "create"},
        },
    }, "nothing in the bot's own namespace, where the App's secrets are"
    assert all(o["kind"] not in ("ClusterRole", "ClusterRoleBinding") for o in objects)


@pytest.mark.parametrize("kind", ["Deployment"])
def test_the_bot_runs_unprivileged(kind: str) -> None:
    (deployment,) = [o for o in rendered() if o["kind"] == kind]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["template"]["spec"]["securityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"
    }
    secrets = [e for e in container["env"] if e["name"] in ("ORBIT_WEBHOOK_SECRET", "ORBIT_GITHUB_APP_ID")]
    assert len(secrets) == 2 and all("value" not in e and "secretKeyRef" in e["valueFrom"] for e in secrets)
    assert not [e for e in container["env"] if "SECRET" in e["name"] and "value" in e], "no secret in git"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ORBIT_KUBE_NAMESPACE"] == "orbit-runners", "runner pods apart from the App's secrets"
    assert env["ORBIT_MODELS_NAMESPACE"] == "models"


def test_app_manifest_asks_for_the_least_permissions() -> None:
    manifest = load(ROOT / ".github/app.yml")
    assert manifest["default_permissions"] == {
        "actions": "write",
        "administration": "write",
        "organization_self_hosted_runners": "write",
        "checks": "write",
        "contents": "write",
        "deployments": "write",
        "issues": "write",
        "pull_requests": "write",
        "metadata": "read",
    }
    assert set(manifest["default_events"]) >= {
        "issue_comment",
        "pull_request",
        "workflow_job",
        "workflow_run",
    }


def test_the_deployer_role_allows_exactly_what_deploying_uses() -> None:
    namespace, role, binding, policy = rendered("deploy/k8s/base/models")
    assert (namespace["kind"], namespace["metadata"]["name"]) == ("Namespace", "models")
    assert policy["kind"] == "NetworkPolicy"  # tests/deploy/test_kustomize.py checks what it allows
    for manifest in (role, binding, policy):
        validate(manifest, "1.30.0", strict=True)
        assert manifest["metadata"]["namespace"] == "models"
    rules = {
        (rule["apiGroups"][0], resource): set(rule["verbs"])
        for rule in role["rules"]
        for resource in rule["resources"]
    }
    # server-side apply of an object that does not exist creates it; each object is read (`get`) first,
    # to check whose model it serves
    applied = {"get", "create", "patch"}
    assert rules == {
        ("apps", "deployments"): applied | {"delete", "list"},  # list: the previews' expiry
        ("", "services"): applied | {"delete"},
        ("networking.k8s.io", "ingresses"): applied | {"delete"},
        ("autoscaling", "horizontalpodautoscalers"): applied,  # production only: never torn down
        ("policy", "poddisruptionbudgets"): applied,
        ("", "pods"): {"list"},
        ("", "services/proxy"): {"get", "create"},
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "orbit", "namespace": "orbit"}]

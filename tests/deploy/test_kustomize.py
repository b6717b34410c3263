"""What a team applies: every overlay of deploy/k8s, alone and with every component, renders with
`kubectl kustomize`, validates against Kubernetes 1.29 to 1.32, and holds what an install needs.

The custom resources (ServiceMonitor, PrometheusRule) have no schema in kubernetes-validate: they are
validated against the subsets of their CRD schemas in tests/schemas/ (strict, written from the
prometheus-operator CRD reference). Each alert's and each dashboard panel's query names only metrics
the bot exports (the shared list below). The RBAC and the network policies are tested in test_rbac.py.
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.settings import FROM_SECRET, Settings, SettingsError, load_settings
from deploy.manifests import PORT, PREVIEW_KEY_SUFFIX

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/k8s"
SCHEMAS = ROOT / "tests/schemas"
KUBERNETES_VERSIONS = ("1.29.0", "1.30.0", "1.31.0", "1.32.0")
OVERLAYS = ("single", "ha")
COMPONENTS = ("ingress-tls", "monitoring", "gpu-nodes", "build-runners", "shared-cache")
RENDERS = (*OVERLAYS, *(f"{overlay}+components" for overlay in OVERLAYS))
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
LABELS = {
    "app.kubernetes.io/name": "orbit",
    "app.kubernetes.io/instance": "orbit",
    "app.kubernetes.io/part-of": "orbit",
    "app.kubernetes.io/version": VERSION,
    "app.kubernetes.io/managed-by": "kustomize",
}
PARTS = {"bot", "worker", "runners", "deployer", "monitoring", "build-runners"}  # app.kubernetes.io/component
APP_SECRETS = ("orbit-github-app", "orbit-database", "orbit-database-ingest")  # in the bot's namespace only

# The metrics the bot exports (fixed names, shared by the code, the alerts and the dashboard).
COUNTERS = {
    "orbit_deliveries_total",
    "orbit_work_attempts_total",
    "orbit_github_calls_total",
    "orbit_untrusted_runs_total",
    "orbit_dead_letters_total",
    "orbit_reports_published_total",
    "orbit_redeliveries_total",
    "orbit_deploys_total",
}
GAUGES = {"orbit_inbox_depth", "orbit_inbox_oldest_pending_seconds", "orbit_runner_pods"}
HISTOGRAMS = {
    "orbit_ack_latency_seconds",
    "orbit_runner_queue_seconds",
    "orbit_run_duration_seconds",
    "orbit_deploy_duration_seconds",
}
SERIES = COUNTERS | GAUGES | {f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}


@dataclass(frozen=True)
class Render:
    """One `kubectl kustomize` output: the multi-document file and its objects."""

    name: str
    path: Path
    objects: tuple[dict[str, Any], ...]

    def of(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        """Return the objects of a kind (and a name, or a generated name's prefix)."""
        return [
            o
            for o in self.objects
            if o["kind"] == kind
            and (name is None or re.fullmatch(f"{name}(-[a-z0-9]{{10}})?", o["metadata"]["name"]))
        ]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        """Return the one object of a kind and name."""
        (found,) = self.of(kind, name)
        return found

    def settings(self) -> dict[str, str]:
        """Return the data of the bot's generated settings ConfigMap."""
        return dict(self.one("ConfigMap", "orbit-settings")["data"])

    def bot(self, deployment: str = "orbit") -> dict[str, Any]:
        """Return the bot's container (in `ha`, the ingest's; `orbit-worker`: the workers')."""
        spec = self.one("Deployment", deployment)["spec"]["template"]["spec"]
        container: dict[str, Any] = spec["containers"][0]
        return container

    def bots(self) -> list[str]:
        """Return the names of the bot's Deployments: one, or the ingest and the workers."""
        return [o["metadata"]["name"] for o in self.of("Deployment") if o["metadata"]["namespace"] == "orbit"]


def render_folder(folder: Path) -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all(kustomize(folder)) if o]


def kustomize(folder: Path) -> str:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render deploy/k8s"
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


# What an installer's own kustomization sets (docs/install.md, step 3): settings, the webhook's host,
# the cluster's networks. Its patches run after the overlay's and the components' own.
INSTALLER = {
    "ORBIT_REGISTRY": "ghcr.io/octo-org",
    "ORBIT_PUBLIC_DOMAIN": "models.octo.example",
    "ORBIT_TLS_ISSUER": "letsencrypt-prod",
    "ORBIT_INGRESS_CLASS": "traefik",
}
HOST = "orbit.octo.example"
NETWORKS = ["10.42.0.0/16", "10.43.0.0/16"]  # k3s's, instead of kubeadm's defaults


def replace(path: str, value: str) -> dict[str, str]:
    return {"op": "replace", "path": path, "value": value}


def installer_patches() -> list[dict[str, Any]]:
    except_list = "/spec/egress/1/to/0/ipBlock/except"
    ingress = [replace("/spec/rules/0/host", HOST), replace("/spec/tls/0/hosts/0", HOST)]
    networks = [replace(f"{except_list}/6", NETWORKS[0]), replace(f"{except_list}/7", NETWORKS[1])]
    return [
        {
            "target": {"kind": "Ingress", "name": "orbit", "namespace": "orbit"},
            "patch": yaml.safe_dump(ingress),
        },
        {
            "target": {"kind": "NetworkPolicy", "name": "orbit-runners|orbit-builds"},
            "patch": yaml.safe_dump(networks),
        },
    ]


def compose(folder: Path, overlay: str, components: tuple[str, ...]) -> Path:
    """Write an installer's kustomization of an overlay with components (and settings, for all four)."""
    folder.mkdir(parents=True)
    up = Path(os.path.relpath(K8S, folder))  # kustomize takes relative paths only
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [str(up / "overlays" / overlay)],
        "components": [str(up / "components" / component) for component in components],
    }
    if components == COMPONENTS:
        literals = [f"{key}={value}" for key, value in INSTALLER.items()]
        generator = {
            "name": "orbit-settings",
            "namespace": "orbit",
            "behavior": "merge",
            "literals": literals,
        }
        kustomization |= {"configMapGenerator": [generator], "patches": installer_patches()}
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return folder


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Render]:
    """Render each overlay, alone and with every component, once for the module."""
    out = tmp_path_factory.mktemp("renders")
    found = {}
    for name in RENDERS:
        overlay, _, with_components = name.partition("+")
        folder = K8S / "overlays" / overlay
        if with_components:
            folder = compose(out / f"{overlay}-kustomization", overlay, COMPONENTS)
        text = kustomize(folder)
        (out / f"{name}.yaml").write_text(text)
        objects = tuple(doc for doc in yaml.safe_load_all(text) if doc)
        found[name] = Render(name, out / f"{name}.yaml", objects)
    return found


# --- Kubernetes and CRD schemas ---


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_render_validates_against_kubernetes(renders: dict[str, Render], version: str) -> None:
    paths = [str(render.path) for render in renders.values()]
    executable = Path(sys.executable).parent / "kubernetes-validate"
    command = [str(executable), "--strict", "--quiet", "--kubernetes-version", version, *paths]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    unchecked = {
        match.group(1)
        for match in re.finditer(r"Couldn't find schema for kind (\w+) with api version", result.stdout)
    }
    assert unchecked == {"ServiceMonitor", "PrometheusRule"}, "only these go to tests/schemas"


def crd_schema(manifest: dict[str, Any]) -> Path:
    group, version = manifest["apiVersion"].split("/")
    path = SCHEMAS / f"{manifest['kind'].lower()}-{group.split('.')[0]}-{version}.json"
    assert path.exists(), f"no schema for {manifest['kind']} {manifest['apiVersion']} in tests/schemas"
    return path


def check_jsonschema(manifest: dict[str, Any], folder: Path) -> subprocess.CompletedProcess[str]:
    """Validate a custom resource against its schema in tests/schemas with check-jsonschema."""
    instance = folder / f"{manifest['kind']}-{manifest['metadata']['name']}.json"
    instance.write_text(json.dumps(manifest))
    executable = Path(sys.executable).parent / "check-jsonschema"
    command = [str(executable), "--schemafile", str(crd_schema(manifest)), str(instance)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_custom_resources_validate_against_their_crd_schemas(
    renders: dict[str, Render], tmp_path: Path
) -> None:
    custom = [o for o in renders["ha+components"].objects if o["apiVersion"].startswith("monitoring.")]
    assert sorted(o["kind"] for o in custom) == ["PrometheusRule", "ServiceMonitor"]
    for manifest in custom:
        result = check_jsonschema(manifest, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_crd_schemas_refuse_a_field_the_crd_lacks(renders: dict[str, Render], tmp_path: Path) -> None:
    monitor = renders["ha+components"].one("ServiceMonitor", "orbit")
    misspelt = {**monitor, "spec": {**monitor["spec"], "endpoint": monitor["spec"]["endpoints"]}}
    result = check_jsonschema(misspelt, tmp_path)
    assert result.returncode == 1
    assert "'endpoint' was unexpected" in result.stdout


# --- what every render holds ---


@pytest.mark.parametrize("name", RENDERS)
def test_every_object_carries_the_labels(renders: dict[str, Render], name: str) -> None:
    for manifest in renders[name].objects:
        labels = manifest["metadata"].get("labels") or {}
        where = f"{manifest['kind']} {manifest['metadata']['name']}"
        assert {key: labels.get(key) for key in LABELS} == LABELS, where
        assert labels.get("app.kubernetes.io/component") in PARTS, where


@pytest.mark.parametrize("name", RENDERS)
def test_the_images_are_of_the_projects_version(renders: dict[str, Render], name: str) -> None:
    render = renders[name]
    for deployment in render.bots():
        assert render.bot(deployment)["image"] == f"ghcr.io/orbit/bot:{VERSION}", deployment
    settings = render.settings()
    assert settings["ORBIT_RUNNER_IMAGE"] == f"ghcr.io/orbit/runner-gpu:{VERSION}"
    assert settings["ORBIT_CPU_RUNNER_IMAGE"] == f"ghcr.io/orbit/runner-cpu:{VERSION}"


def secret_references(objects: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, str, str]]:
    """Yield (namespace, Secret, key or "") for each Secret a pod template names."""
    for manifest in objects:
        spec = manifest.get("spec", {}).get("template", {}).get("spec")
        if spec is None:
            continue
        namespace = manifest["metadata"]["namespace"]
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                for item in volume["secret"].get("items") or [{"key": ""}]:
                    yield namespace, volume["secret"]["secretName"], item["key"]
        for container in spec["containers"]:
            for entry in container.get("env", []):
                if ref := entry.get("valueFrom", {}).get("secretKeyRef"):
                    yield namespace, ref["name"], ref["key"]
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    yield namespace, source["secretRef"]["name"], ""


def documented_secrets() -> dict[tuple[str, str], str]:
    """Return {(namespace, Secret): its entry} from the list atop base/kustomization.yaml."""
    comment = (K8S / "base/kustomization.yaml").read_text()
    found = {}
    for section in re.finditer(r"^#   namespace `([a-z-]+)`.*\n((?:#     .*\n)+)", comment, re.M):
        for entry in re.finditer(r"^#     (orbit-[a-z-]+) .*\n(?:#      .*\n)*", section.group(2), re.M):
            found[section.group(1), entry.group(1)] = entry.group(0)
    return found


def test_the_secrets_list_is_the_installs() -> None:
    assert set(documented_secrets()) == {
        ("orbit", "orbit-github-app"),
        ("orbit", "orbit-database"),
        ("orbit", "orbit-database-ingest"),
        ("models", "orbit-registry"),
        ("models", "orbit-model-api-key"),
        ("models", "orbit-model-api-key-preview"),  # the previews' own key (deploy/manifests.py)
    }


@pytest.mark.parametrize("name", RENDERS)
def test_no_secret_is_rendered_and_each_one_named_is_documented(
    renders: dict[str, Render], name: str
) -> None:
    render = renders[name]
    assert not render.of("Secret"), "Secrets are created by the installer, never kept in git"
    documented = documented_secrets()
    named = set(secret_references(render.objects))
    settings = render.settings()
    named |= {
        ("models", settings[key] + suffix, "api-key")
        for key in ["ORBIT_MODEL_API_KEY_SECRET"]
        if key in settings
        for suffix in ("", PREVIEW_KEY_SUFFIX)  # production's key, and the previews' own
    }
    named |= {("models", settings[key], "") for key in ["ORBIT_IMAGE_PULL_SECRET"] if key in settings}
    assert named, "the bot needs the App's Secret"
    for namespace, secret, key in named:
        entry = documented.get((namespace, secret))
        assert entry, f"{secret} (namespace {namespace}) is not listed in base/kustomization.yaml"
        assert not key or f"`{key}`" in entry, f"{secret}: key {key} is not listed"


@pytest.mark.parametrize("name", RENDERS)
def test_no_app_secret_is_named_outside_the_bots_namespace(renders: dict[str, Render], name: str) -> None:
    for manifest in renders[name].objects:
        if manifest["metadata"].get("namespace", "orbit") != "orbit":
            text = yaml.safe_dump(manifest)
            assert not [s for s in APP_SECRETS if s in text], manifest["metadata"]["name"]
    refs = {(namespace, secret) for namespace, secret, _ in secret_references(renders[name].objects)}
    assert {namespace for namespace, secret in refs if secret in APP_SECRETS} == {"orbit"}


@pytest.mark.parametrize("name", RENDERS)
def test_the_namespaces_enforce_pod_security(renders: dict[str, Render], name: str) -> None:
    levels = {
        o["metadata"]["name"]: o["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        for o in renders[name].of("Namespace")
    }
    expected = {"orbit": "restricted", "orbit-runners": "restricted", "models": "restricted"}
    if name.endswith("+components"):
        expected["orbit-builds"] = "privileged"  # the one privileged place, only with build-runners
    assert levels == expected


# --- the bot's settings ---


def bot_environment(render: Render, deployment: str = "orbit") -> dict[str, str]:
    """Return the bot's environment as the pod would get it, with stand-ins for the Secrets' values."""
    stand_ins = {
        ("orbit-github-app", "app-id"): "12345",
        ("orbit-github-app", "webhook-secret"): "a-webhook-secret",
        ("orbit-database", "url"): "postgresql+psycopg://orbit@db.example/orbit",
        ("orbit-database-ingest", "url"): "postgresql+psycopg://orbit_ingest@db.example/orbit",
    }
    environment = render.settings()
    for entry in render.bot(deployment)["env"]:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        environment[entry["name"]] = stand_ins[ref["name"], ref["key"]] if ref else entry["value"]
    return environment


@pytest.mark.parametrize("name", RENDERS)
def test_every_setting_is_one_the_bot_reads(renders: dict[str, Render], name: str) -> None:
    unknown = [
        key
        for deployment in renders[name].bots()
        for key in bot_environment(renders[name], deployment)
        if key.removeprefix("ORBIT_").lower() not in Settings.model_fields
    ]
    assert unknown == [], "bot/settings.py ignores these (extra='ignore'): a typo, or a missing setting"


@pytest.mark.parametrize("name", RENDERS)
def test_the_bot_starts_with_the_rendered_settings(
    renders: dict[str, Render], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for deployment in renders[name].bots():
        for key in [key for key in os.environ if key.startswith("ORBIT_")]:
            monkeypatch.delenv(key)
        environment = bot_environment(renders[name], deployment)
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        if environment.get("ORBIT_BUILD_NAMESPACE") or environment.get("ORBIT_DVC_CACHE_CLAIM"):
            # build runners and the shared cache need a restricted runner group, which only the installer
            # can name
            with pytest.raises(SettingsError, match="needs ORBIT_RUNNER_GROUP_ID"):
                load_settings()
            monkeypatch.setenv("ORBIT_RUNNER_GROUP_ID", "7")
        settings = load_settings()
        assert (settings.kube_namespace, settings.models_namespace) == ("orbit-runners", "models")
        assert settings.role == {"orbit": "ingest" if name.startswith("ha") else "all"}.get(
            deployment, "worker"
        )
    assert settings.webhook_path == "/webhook"
    assert str(settings.github_private_key_path) == "/secrets/github/private-key.pem"


@pytest.mark.parametrize("name", RENDERS)
def test_a_missing_app_secret_is_named_by_the_bot_as_the_manifests_name_it(
    renders: dict[str, Render], name: str
) -> None:
    for deployment in renders[name].bots():
        for entry in renders[name].bot(deployment)["env"]:
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                named = f"key {ref['key']} of the Secret {ref['name']}"
                if (entry["name"], ref["name"]) != ("ORBIT_DATABASE_URL", "orbit-database-ingest"):
                    assert FROM_SECRET[entry["name"]] == named
                # optional: the bot starts and names what is missing; the database never falls back to SQLite
                assert ref.get("optional", False) is (ref["name"] == "orbit-github-app"), entry["name"]


def test_the_private_key_file_is_mounted_where_the_setting_says(renders: dict[str, Render]) -> None:
    render = renders["single"]
    path = Path(bot_environment(render)["ORBIT_GITHUB_PRIVATE_KEY_PATH"])
    (mount,) = [m for m in render.bot()["volumeMounts"] if m["name"] == "github-key"]
    (volume,) = [
        v for v in render.one("Deployment", "orbit")["spec"]["template"]["spec"]["volumes"] if "secret" in v
    ]
    assert (mount["mountPath"], mount["readOnly"]) == (str(path.parent), True)
    assert volume["secret"]["items"] == [{"key": "private-key.pem", "path": path.name}]
    assert (
        FROM_SECRET["ORBIT_GITHUB_PRIVATE_KEY"]
        == f"key private-key.pem of the Secret {volume['secret']['secretName']}"
    )
    assert volume["secret"]["defaultMode"] & 0o007 == 0, "not readable by other users"


# --- the overlays ---


def pod_spec(render: Render, deployment: str = "orbit") -> dict[str, Any]:
    spec: dict[str, Any] = render.one("Deployment", deployment)["spec"]["template"]["spec"]
    return spec


def egress_ports(render: Render, name: str = "orbit") -> set[int]:
    policy = render.one("NetworkPolicy", name)
    return {port["port"] for rule in policy["spec"]["egress"] for port in rule["ports"]}


def test_single_is_one_replica_on_sqlite_on_a_volume(renders: dict[str, Render]) -> None:
    render = renders["single"]
    deployment = render.one("Deployment", "orbit")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "two pods never share the file"
    claim = render.one("PersistentVolumeClaim", "orbit-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    (volume,) = [v for v in pod_spec(render)["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == "orbit-data"
    (mount,) = [m for m in render.bot()["volumeMounts"] if m["name"] == volume["name"]]
    database = render.settings()["ORBIT_DATABASE_URL"]
    assert database.startswith(f"sqlite:///{mount['mountPath']}/"), database
    assert not render.of("PodDisruptionBudget")
    assert 5432 not in egress_ports(render), "no PostgreSQL, no way to it"


@pytest.mark.parametrize("deployment", ["orbit", "orbit-worker"])
def test_ha_is_replicas_on_postgresql_from_its_secret(renders: dict[str, Render], deployment: str) -> None:
    render = renders["ha"]
    replicas = render.one("Deployment", deployment)["spec"]["replicas"]
    assert replicas >= 2
    assert not render.of("PersistentVolumeClaim")
    spec = pod_spec(render, deployment)
    assert not [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    env = {e["name"]: e for e in render.bot(deployment)["env"]}
    secret = {"orbit": "orbit-database-ingest", "orbit-worker": "orbit-database"}[deployment]
    assert env["ORBIT_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": secret, "key": "url"}}
    assert "ORBIT_DATABASE_URL" not in render.settings()
    selector = render.one("Deployment", deployment)["spec"]["selector"]["matchLabels"]
    (term,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= selector.items()
    assert render.one("Deployment", deployment)["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert 5432 in egress_ports(render, deployment)


@pytest.mark.parametrize("name", ["orbit", "orbit-worker"])
def test_ha_keeps_an_ingest_and_a_worker_replica_through_a_drain(
    renders: dict[str, Render], name: str
) -> None:
    render = renders["ha"]
    deployment = render.one("Deployment", name)
    budget = render.one("PodDisruptionBudget", name)
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Return whether a label selector (matchLabels, matchExpressions with In) selects the labels."""
    plain = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
    wanted = all(labels.get(key) == value for key, value in plain.items())
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        wanted = wanted and labels.get(expression["key"]) in expression["values"]
    return wanted


def without(entries: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["name"] not in names]


def test_the_workers_pod_is_the_bots_but_for_its_role_database_and_spread(renders: dict[str, Render]) -> None:
    # worker-deployment.yaml copies base/bot/deployment.yaml (a kustomize suffix would keep the name
    # `orbit`, which every patch of the ingest would then hit too): the two must not drift apart.
    (bot,) = [
        o
        for o in render_folder(K8S / "base")
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "orbit"
    ]
    worker = copy.deepcopy(renders["ha"].one("Deployment", "orbit-worker"))  # the render is shared
    template, base = worker["spec"]["template"], bot["spec"]["template"]
    assert {**template["metadata"]["labels"], "app.kubernetes.io/component": "bot"} == base["metadata"][
        "labels"
    ]
    spec = {key: value for key, value in template["spec"].items() if key != "affinity"}
    (container,), (base_container,) = spec.pop("containers"), base["spec"]["containers"]
    assert spec == {key: value for key, value in base["spec"].items() if key != "containers"}
    assert without(container.pop("env"), "ORBIT_ROLE", "ORBIT_DATABASE_URL") == base_container.pop("env")
    for each in (container, base_container):  # the generated ConfigMap's hash differs with its content
        (source,) = each.pop("envFrom")
        assert re.fullmatch("orbit-settings-[a-z0-9]{10}", source["configMapRef"]["name"])
    assert container == base_container
    assert renders["ha"].bot("orbit-worker")["env"][0] == {"name": "ORBIT_ROLE", "value": "worker"}


def test_an_installers_patch_of_orbit_reaches_the_ingest_only(tmp_path: Path) -> None:
    folder = tmp_path / "installer"
    folder.mkdir()
    up = Path(os.path.relpath(K8S, folder))
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "orbit", "namespace": "orbit"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "orbit", "env": [{"name": "X", "value": "1"}]}]}}
        },
    }
    port = [{"op": "replace", "path": "/spec/egress/1/ports/0/port", "value": 6432}]
    kustomization = {
        "resources": [str(up / "overlays/ha")],
        "patches": [
            {"patch": yaml.safe_dump(deployment)},
            {"target": {"kind": "NetworkPolicy", "name": "orbit"}, "patch": yaml.safe_dump(port)},
            {
                "target": {"kind": "Service", "name": "orbit"},
                "patch": yaml.safe_dump(
                    [{"op": "add", "path": "/metadata/annotations", "value": {"patched": "yes"}}]
                ),
            },
        ],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(kustomize(folder)) if o}

    def env(name: str) -> list[str]:
        return [
            e["name"] for e in objects["Deployment", name]["spec"]["template"]["spec"]["containers"][0]["env"]
        ]

    def ports(name: str) -> list[int]:
        return [p["port"] for rule in objects["NetworkPolicy", name]["spec"]["egress"] for p in rule["ports"]]

    assert "X" in env("orbit") and "X" not in env("orbit-worker")
    assert (ports("orbit"), ports("orbit-worker")) == ([53, 53, 6432], [53, 53, 443, 6443, 5432])
    assert "annotations" not in objects["Service", "orbit-worker"]["metadata"]


def test_upgrading_to_ha_keeps_the_old_pods_way_out_until_they_are_replaced(
    renders: dict[str, Render],
) -> None:
    # Before the split, the Deployment `orbit` ran every role, its pods labelled as in the base.
    (before,) = [
        o
        for o in render_folder(K8S / "base")
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "orbit"
    ]
    ingest = renders["ha"].one("Deployment", "orbit")
    assert ingest["spec"]["selector"] == before["spec"]["selector"], "a Deployment's selector cannot change"
    policy = renders["ha"].one("NetworkPolicy", "orbit")["spec"]["podSelector"]
    assert not matches(policy, before["spec"]["template"]["metadata"]["labels"]), (
        "an old pod handling deliveries would lose GitHub and the API mid-rollout"
    )
    assert matches(policy, ingest["spec"]["template"]["metadata"]["labels"])


def test_ha_runs_the_ingest_apart_and_only_the_workers_hold_the_app_key_and_a_token(
    renders: dict[str, Render],
) -> None:
    render = renders["ha"]
    ingest, workers = pod_spec(render, "orbit"), pod_spec(render, "orbit-worker")
    assert bot_environment(render, "orbit")["ORBIT_ROLE"] == "ingest"
    assert bot_environment(render, "orbit-worker")["ORBIT_ROLE"] == "worker"
    # The ingest: the webhook secret and the database, nothing else secret; no token, no Role.
    ingest_refs = set(secret_references((render.one("Deployment", "orbit"),)))
    assert ingest_refs == {
        ("orbit", "orbit-github-app", "webhook-secret"),
        ("orbit", "orbit-database-ingest", "url"),  # a role that may only store deliveries
    }
    role = render.settings()["ORBIT_INGEST_DATABASE_ROLE"]  # the workers grant it that much
    guide = (ROOT / "docs/install.md").read_text()  # step 2 makes that role with the shipped script
    assert f"-v ingest={role} " in guide and "-f deploy/postgres/ingest-role.sql" in guide
    assert 'CREATE ROLE :"ingest" LOGIN' in (ROOT / "deploy/postgres/ingest-role.sql").read_text()
    assert bot_environment(render, "orbit")["ORBIT_DATABASE_URL"].startswith(f"postgresql+psycopg://{role}@")
    assert "ORBIT_GITHUB_PRIVATE_KEY_PATH" not in bot_environment(render, "orbit")
    assert ingest["automountServiceAccountToken"] is False
    account = render.one("ServiceAccount", ingest["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False
    bound = [
        subject["name"]
        for binding in [*render.of("RoleBinding"), *render.of("ClusterRoleBinding")]
        for subject in binding.get("subjects") or []
    ]
    assert ingest["serviceAccountName"] not in bound
    assert egress_ports(render, "orbit") == {53, 5432}, "neither GitHub nor the Kubernetes API"
    # The workers: the App's key and the account the runners' and models' Roles are bound to.
    assert ("orbit", "orbit-github-app", "private-key.pem") in set(
        secret_references((render.one("Deployment", "orbit-worker"),))
    )
    assert workers["serviceAccountName"] in bound
    assert egress_ports(render, "orbit-worker") == {53, 443, 6443, 5432}
    # Webhooks reach the ingest only; the workers' Service is headless, for the scrapes.
    labels = {
        name: render.one("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        for name in render.bots()
    }
    selector = render.one("Service", "orbit")["spec"]["selector"]
    assert [name for name, pod in labels.items() if matches(selector, pod)] == ["orbit"]
    worker_service = render.one("Service", "orbit-worker")
    assert worker_service["spec"]["clusterIP"] == "None"
    assert [name for name, pod in labels.items() if matches(worker_service["spec"]["selector"], pod)] == [
        "orbit-worker"
    ]


@pytest.mark.parametrize("name", RENDERS)
def test_the_model_pods_take_requests_on_their_port_only_and_reach_only_dns(
    renders: dict[str, Render], name: str
) -> None:
    """F4: a preview runs a PR's code; without a policy it reached the cloud metadata address, the API
    server, production's pods, the bot and PostgreSQL. Every pod of `models` now takes requests on the
    model's port only (from anywhere: the ingress controller and the API server's service proxy, for the
    smoke test), and reaches only the cluster's DNS."""
    render = renders[name]
    (policy,) = [o for o in render.of("NetworkPolicy") if o["metadata"]["namespace"] == "models"]
    spec = policy["spec"]
    assert spec["podSelector"] == {}, "every pod of the namespace, whatever its labels"
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"port": PORT, "protocol": "TCP"}], "the model's container port, `http`"
    assert "from" not in ingress, "from anywhere: the API server's proxy comes from the control plane"
    (dns,) = spec["egress"]
    assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [(53, "TCP"), (53, "UDP")]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]


def test_ha_turns_the_model_endpoints_api_key_on(renders: dict[str, Render]) -> None:
    assert renders["ha"].settings()["ORBIT_MODEL_API_KEY_SECRET"] == "orbit-model-api-key"
    assert "ORBIT_MODEL_API_KEY_SECRET" not in renders["single"].settings(), "off by default"


@pytest.mark.parametrize("name", RENDERS)
def test_the_ingress_routes_only_the_webhook_to_the_bot(renders: dict[str, Render], name: str) -> None:
    render = renders[name]
    (rule,) = render.one("Ingress", "orbit")["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == (render.settings()["ORBIT_WEBHOOK_PATH"], "Exact")
    backend = path["backend"]["service"]
    service = render.one("Service", backend["name"])
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == backend["port"]["name"]]
    (container_port,) = [p for p in render.bot()["ports"] if p["name"] == port["targetPort"]]
    assert container_port["containerPort"] == 8000
    assert (
        service["spec"]["selector"].items()
        <= render.one("Deployment", "orbit")["spec"]["template"]["metadata"]["labels"].items()
    )


# --- the components ---


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_installers_settings_reach_the_bots_ingress_and_the_runners_networks(
    renders: dict[str, Render], overlay: str
) -> None:
    render = renders[f"{overlay}+components"]
    settings = render.settings()
    assert {key: settings[key] for key in INSTALLER} == INSTALLER
    ingress = render.one("Ingress", "orbit")
    assert (
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == INSTALLER["ORBIT_TLS_ISSUER"]
    )
    assert ingress["spec"]["ingressClassName"] == INSTALLER["ORBIT_INGRESS_CLASS"]
    (tls,) = ingress["spec"]["tls"]
    assert tls["hosts"] == [ingress["spec"]["rules"][0]["host"]] == [HOST]
    assert tls["secretName"]
    for name in ("orbit-runners", "orbit-builds"):
        excepted = render.one("NetworkPolicy", name)["spec"]["egress"][1]["to"][0]["ipBlock"]["except"]
        assert excepted[6:] == NETWORKS, name
    assert "ORBIT_TLS_ISSUER" not in yaml.safe_dump(render.objects).replace("ORBIT_TLS_ISSUER:", "")
    assert "tls" not in renders[overlay].one("Ingress", "orbit")["spec"]


def test_ingress_tls_refuses_to_render_without_its_settings(tmp_path: Path) -> None:
    folder = compose(tmp_path / "tls-only", "single", ("ingress-tls",))
    kubectl = shutil.which("kubectl")
    assert kubectl
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "data.ORBIT_TLS_ISSUER` is missing" in result.stderr


def test_gpu_nodes_sets_where_gpu_runners_go(renders: dict[str, Render]) -> None:
    settings = renders["single+components"].settings()
    assert json.loads(settings["ORBIT_GPU_NODE_SELECTOR"]) == {"nvidia.com/gpu.present": "true"}
    tolerations = json.loads(settings["ORBIT_GPU_TOLERATIONS"])
    assert tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert settings["ORBIT_GPU_RUNTIME_CLASS"] == "nvidia"
    assert "ORBIT_GPU_RUNTIME_CLASS" not in renders["single"].settings()


def test_build_runners_is_an_isolated_namespace_like_the_runners(renders: dict[str, Render]) -> None:
    render = renders["ha+components"]
    builds = [o for o in render.objects if o["metadata"].get("namespace") == "orbit-builds"]
    assert sorted(o["kind"] for o in builds) == ["NetworkPolicy", "Role", "RoleBinding"]
    assert render.one("Role", "orbit-builds")["rules"] == render.one("Role", "orbit-runners")["rules"]
    assert render.one("RoleBinding", "orbit-builds")["subjects"] == [
        {"kind": "ServiceAccount", "name": "orbit", "namespace": "orbit"}
    ]
    policy = render.one("NetworkPolicy", "orbit-builds")["spec"]
    assert policy == render.one("NetworkPolicy", "orbit-runners")["spec"], "DNS and HTTPS outside only"
    for deployment in render.bots():
        env = {e["name"]: e.get("value") for e in render.bot(deployment)["env"]}
        assert env["ORBIT_BUILD_NAMESPACE"] == "orbit-builds", deployment
    assert not [o for o in renders["ha"].objects if "orbit-builds" in yaml.safe_dump(o)]


def test_shared_cache_is_a_read_write_many_claim_beside_the_runner_pods_named_in_the_settings(
    renders: dict[str, Render], monkeypatch: pytest.MonkeyPatch
) -> None:
    render = renders["single+components"]
    claim = render.one("PersistentVolumeClaim", "orbit-dvc-cache")
    assert claim["metadata"]["namespace"] == "orbit-runners", "where the runner pods that mount it are"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "several runner pods, on several nodes"
    assert render.settings()["ORBIT_DVC_CACHE_CLAIM"] == "orbit-dvc-cache"
    assert not renders["single"].of("PersistentVolumeClaim", "orbit-dvc-cache")
    for key in [key for key in os.environ if key.startswith("ORBIT_")]:
        monkeypatch.delenv(key)
    for key, value in {**bot_environment(render), "ORBIT_BUILD_NAMESPACE": ""}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match="ORBIT_DVC_CACHE_CLAIM needs ORBIT_RUNNER_GROUP_ID"):
        load_settings()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_monitor_scrapes_every_bot_process_metrics(
    renders: dict[str, Render], overlay: str
) -> None:
    render = renders[f"{overlay}+components"]
    monitor = render.one("ServiceMonitor", "orbit")
    scraped = [
        s for s in render.of("Service") if matches(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    pods = {
        name: render.one("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        for name in render.bots()
    }
    behind = {
        name for s in scraped for name, labels in pods.items() if matches(s["spec"]["selector"], labels)
    }
    assert behind == set(pods), "every bot process counts its own deliveries and work"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    for service in scraped:
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        assert port["targetPort"] == "http"


# --- alerts and dashboard: only metrics the bot exports ---

PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
GROUPINGS = r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"


def metric_names(expression: str) -> set[str]:
    """Return the metric names a PromQL expression selects (not its functions, labels or keywords)."""
    text = re.sub(r'"(\\.|[^"\\])*"', "", expression)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(GROUPINGS, "", text)
    names = re.findall(r"(?<![\w$.])[A-Za-z_:][\w:]*\b(?!\s*\()", text)
    return set(names) - PROMQL_WORDS


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ('sum by (le) (rate(a_bucket{x="y", z=~"p|q"}[5m])) / on (job) b', {"a_bucket", "b"}),
        ("histogram_quantile(0.9, sum by (class, le) (rate(c_bucket[$__rate_interval])))", {"c_bucket"}),
        ('max(d) > 600 and absent(e{f="rate(g)"}) unless h offset 5m', {"d", "e", "h"}),
        ("increase(x_total[1h]) > bool 0", {"x_total"}),
    ],
)
def test_metric_names_are_read_from_promql(expression: str, names: set[str]) -> None:
    assert metric_names(expression) == names


def alert_rules(render: Render) -> list[dict[str, Any]]:
    rule = render.one("PrometheusRule", "orbit")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_the_alerts_cover_what_needs_a_person_with_known_metrics(renders: dict[str, Render]) -> None:
    rules = alert_rules(renders["ha+components"])
    alerts = {rule["alert"]: metric_names(rule["expr"]) for rule in rules}
    required = {
        "OrbitDeadLetters": {"orbit_dead_letters_total"},
        "OrbitOldestPendingDeliveryTooOld": {"orbit_inbox_oldest_pending_seconds"},
        "OrbitRunnerPodsPendingTooLong": {"orbit_runner_pods"},
        "OrbitDeployFailures": {"orbit_deploys_total"},
    }
    for alert, metrics in required.items():
        assert alerts.get(alert) == metrics, alert
    for name, metrics in alerts.items():
        assert metrics and metrics <= SERIES, f"{name}: {metrics - SERIES} are not exported by the bot"
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def dashboard_queries() -> dict[str, list[str]]:
    dashboard = json.loads((K8S / "components/monitoring/dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    return {panel["title"]: [target["expr"] for target in panel["targets"]] for panel in panels}


def test_each_dashboard_panel_queries_known_metrics() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 10
    for title, expressions in queries.items():
        assert expressions, f"{title}: no query"
        for expression in expressions:
            names = metric_names(expression)
            assert names and names <= SERIES, f"{title}: {names - SERIES} are not exported by the bot"


def test_the_dashboard_shows_every_metric() -> None:
    shown = {
        name for expressions in dashboard_queries().values() for e in expressions for name in metric_names(e)
    }
    family = {re.sub(r"_(bucket|sum|count)$", "", name) if name not in COUNTERS else name for name in shown}
    assert family == COUNTERS | GAUGES | HISTOGRAMS


def test_the_dashboard_ships_for_grafanas_sidecar(renders: dict[str, Render]) -> None:
    configmap = renders["single+components"].one("ConfigMap", "orbit-grafana-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "orbit"
    (content,) = configmap["data"].values()
    assert json.loads(content) == json.loads((K8S / "components/monitoring/dashboard.json").read_text())

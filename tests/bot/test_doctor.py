"""`orbit doctor` against the GitHub and Kubernetes doubles, with each failure made to happen.

A healthy installation passes every check (exit 0); each broken piece fails exactly its own check,
with the fix, and the exit status counts the failures.
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes.config import kube_config

from bot import app_manifest, inbox, redelivery
from bot.cli import main
from bot.doctor.kube import IMAGE_REFERENCE
from bot.doctor.rbac import MODELS, NEEDED, RUNNERS, Grant
from bot.processes import free_port
from bot.settings import Settings
from tests.fakes import SECRET
from tests.github_double import GitHubState, serve_github
from tests.kube_double import Access, KubeState, granted, render, serve_kube, write_kubeconfig

ROOT = Path(__file__).resolve().parents[2]


def pem_of(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


APP_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = pem_of(APP_KEY)


@dataclass
class Install:
    """The doubles of one installation, and the environment `orbit doctor` reads."""

    github: GitHubState
    kube: KubeState
    env: dict[str, str]
    root: Path

    def run(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> "Ran":
        """Run `orbit doctor` in this process; return its exit status and output lines."""
        for name in [n for n in os.environ if n.startswith("ORBIT_") or n.startswith("KUBERNETES_")]:
            monkeypatch.delenv(name)
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        # The client reads $KUBECONFIG once, when it is imported, as it would at `orbit doctor` start-up.
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", self.env["KUBECONFIG"])
        status = main(["doctor", "--project", str(self.root), *args])
        out = capsys.readouterr().out
        return Ran(status, out)


@dataclass
class Ran:
    status: int
    out: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def line(self, check: str) -> str:
        """Return the one line of `check` (its name, then a colon)."""
        (found,) = [line for line in self.lines if line[2:].startswith(f"{check}:")]
        return found


def create_tables(url: str, *tables: sa.MetaData) -> None:
    engine = sa.create_engine(url)
    for metadata in tables:
        metadata.create_all(engine)
    engine.dispose()


@pytest.fixture
def install(tmp_path: Path) -> Iterator[Install]:
    """A healthy installation: App, webhook, database, cluster, deploys on."""
    github = GitHubState(app_key=APP_KEY.public_key())
    github.hook.target = "https://orbit.example.com/webhook"
    kube = KubeState()
    database = f"sqlite:///{tmp_path / 'orbit.db'}"
    create_tables(database, inbox.metadata, redelivery.metadata)
    with serve_github(github) as github_url, serve_kube(kube) as kube_url:
        env = {
            "ORBIT_GITHUB_APP_ID": "4242",
            "ORBIT_GITHUB_PRIVATE_KEY": PEM,
            "ORBIT_WEBHOOK_SECRET": SECRET.decode(),
            "ORBIT_GITHUB_API_URL": github_url,
            "ORBIT_DATABASE_URL": database,
            "ORBIT_REGISTRY": "ghcr.io/octo-org",
            "ORBIT_PUBLIC_DOMAIN": "models.example.com",
            "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", kube_url)),
        }
        yield Install(github, kube, env, tmp_path)


HEALTHY = [
    "✓ settings: every ORBIT_ variable orbit needs is set and valid",
    "✓ GitHub App: GitHub accepts the App's JWT: orbit (id 1)",
    "✓ App permissions: the 9 orbit needs",
    "✓ App events: subscribed to the 5 orbit handles",
    "✓ installations: 1: octo-org",
    "✓ webhook: https://orbit.example.com/webhook, with a secret",
    "✓ deliveries: none of the 0 in the last 24 h failed",
    "✓ RBAC in orbit-runners: the 7 verbs orbit uses are granted",
    "✓ RBAC in models: the 22 verbs orbit uses are granted",
    "⚠ namespace orbit-runners: cannot tell: orbit may not read Namespaces (it has no cluster-wide grant)"
    " — kubectl get namespace orbit-runners",
    "⚠ namespace models: cannot tell: orbit may not read Namespaces (it has no cluster-wide grant)"
    " — kubectl get namespace models",
    "⚠ GPU nodes: skipped: not allowed to list nodes — kubectl describe nodes | grep nvidia.com/gpu",
    "✓ runner images: ghcr.io/orbit/runner-gpu:latest, ghcr.io/orbit/runner-cpu:latest"
    " (the cluster's registry access is not checked)",
    "✓ image pull secret: none set (ORBIT_IMAGE_PULL_SECRET): images are pulled without credentials",
    "every check passed",
]


def test_a_healthy_installation_passes_every_check(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = install.run(monkeypatch, capsys)

    assert ran.status == 0, ran.out
    lines = [
        line for line in ran.lines if not line.startswith(("✓ database", "✓ Kubernetes", "⚠ DVC remote"))
    ]
    assert lines == HEALTHY
    kube = install.env["KUBECONFIG"]
    assert ran.line("Kubernetes").startswith("✓ Kubernetes: v1.31.0 at http://127.0.0.1:"), kube
    assert ran.line("database").startswith("✓ database: sqlite:///")
    assert ran.line("DVC remote") == f"⚠ DVC remote: skipped: no DVC remote configured in {install.root}/.dvc"
    assert SECRET.decode() not in ran.out and "PRIVATE KEY" not in ran.out


def test_json_lists_every_check_and_the_exit_status_counts_the_failures(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.github.installations.clear()
    install.github.hook_config["url"] = ""

    ran = install.run(monkeypatch, capsys, "--json")

    checks = json.loads(ran.out)
    assert all(set(check) == {"check", "ok", "detail", "fix"} for check in checks)
    failing = [check for check in checks if check["ok"] is False]
    assert [check["check"] for check in failing] == ["installations", "webhook"]
    assert ran.status == 2
    assert [check["ok"] for check in checks if check["check"] == "GPU nodes"] == [None]


# --- GitHub ---


def test_a_jwt_github_refuses_fails_and_skips_what_needs_it(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.env["ORBIT_GITHUB_PRIVATE_KEY"] = pem_of(OTHER_KEY)  # not the App's key

    ran = install.run(monkeypatch, capsys)

    assert ran.line("GitHub App") == (
        "✗ GitHub App: GitHub refused the App's JWT (401) — ORBIT_GITHUB_APP_ID and the private key"
        " must be the App's: make a new key in its settings"
    )
    assert ran.line("installations") == "⚠ installations: skipped: the GitHub App check failed"
    assert ran.status == 1


def test_a_private_key_that_is_not_pem_fails_the_github_check(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.env["ORBIT_GITHUB_PRIVATE_KEY"] = (
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"
    )

    ran = install.run(monkeypatch, capsys)

    failed = [line for line in ran.lines if line.startswith("✗")]
    assert len(failed) == ran.status == 1
    assert "ORBIT_GITHUB_PRIVATE_KEY" in failed[0]
    assert "not a key" not in ran.out


def test_a_missing_permission_and_one_held_too_low(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    del install.github.app_permissions["deployments"]
    install.github.app_permissions["checks"] = "read"
    install.github.app_permissions["contents"] = "admin"  # more than needed is enough

    ran = install.run(monkeypatch, capsys)

    assert ran.line("App permissions") == (
        "✗ App permissions: missing checks: write, deployments: write — grant them at"
        " https://github.com/settings/apps/orbit/permissions, then accept them on each installation"
    )
    assert ran.status == 1


def test_a_missing_event(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.github.app_events.remove("workflow_job")

    ran = install.run(monkeypatch, capsys)

    assert ran.line("App events") == (
        "✗ App events: not subscribed to workflow_job — subscribe to them at"
        " https://github.com/settings/apps/orbit/permissions (Subscribe to events)"
    )
    assert ran.status == 1


def test_no_installation(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.github.installations.clear()

    ran = install.run(monkeypatch, capsys)

    assert ran.line("installations") == (
        "✗ installations: the App is installed nowhere — install it: https://github.com/apps/orbit/installations/new"
    )
    assert ran.status == 1


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"url": ""}, "no webhook URL"),
        ({"secret": None}, "no webhook secret"),
        ({"insecure_ssl": "1"}, "SSL verification is off"),
        ({"url": "", "secret": None}, "no webhook URL; no webhook secret"),
    ],
)
def test_a_webhook_without_url_secret_or_ssl(
    install: Install,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    problem: str,
) -> None:
    install.github.hook_config.update(change)

    ran = install.run(monkeypatch, capsys)

    assert ran.line("webhook") == (
        f"✗ webhook: {problem} — at https://github.com/settings/apps/orbit: URL https://HOST/webhook,"
        " secret = ORBIT_WEBHOOK_SECRET, SSL verified"
    )
    assert ran.status == 1


def test_deliveries_whose_every_attempt_failed_in_the_last_day(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hook, payload = install.github.hook, {"action": "opened"}
    old = hook.record("pull_request", payload, 503, "Invalid HTTP Response: 503")
    old["delivered_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2 * 86400))
    hook.record("pull_request", payload, 0, guid="lost")
    hook.record("pull_request", payload, 503, "Invalid HTTP Response: 503", guid="lost")  # still failing
    hook.record("pull_request", payload, 0, guid="recovered")
    hook.record("pull_request", payload, 202, "OK", guid="recovered")  # redelivered: no longer failing
    hook.record("issue_comment", payload, 202, "OK")

    ran = install.run(monkeypatch, capsys)

    line = ran.line("deliveries")
    assert line.startswith(
        "✗ deliveries: 1 of 3 in the last 24 h failed every attempt;"
        " the newest: Invalid HTTP Response: 503 at "
    ), line
    assert line.endswith(
        " UTC — make the webhook URL reach `orbit serve`; it asks GitHub to redeliver them once it is up"
    )
    assert ran.status == 1


def test_deliveries_refused_with_401_point_at_the_webhook_secret(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.github.hook.record("pull_request", {"action": "opened"}, 401, "Invalid HTTP Response: 401")

    ran = install.run(monkeypatch, capsys)

    assert "(401: the webhook secret differs from ORBIT_WEBHOOK_SECRET)" in ran.line("deliveries")


# --- settings ---


def test_invalid_settings_fail_and_skip_what_needs_them(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    del install.env["ORBIT_WEBHOOK_SECRET"]

    ran = install.run(monkeypatch, capsys)

    assert ran.line("settings").startswith("✗ settings: bad configuration: ORBIT_WEBHOOK_SECRET is required")
    assert ran.line("Kubernetes") == "⚠ Kubernetes: skipped: the settings are not valid"
    assert ran.status == 1


def test_an_ingest_process_is_checked_without_the_app_or_the_cluster(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("ORBIT_GITHUB_APP_ID", "ORBIT_GITHUB_PRIVATE_KEY"):
        del install.env[name]
    install.env["KUBECONFIG"] = str(install.root / "no-kubeconfig")
    install.env["ORBIT_ROLE"] = "ingest"

    ran = install.run(monkeypatch, capsys)

    assert ran.status == 0, ran.out
    assert ran.line("settings") == "✓ settings: every ORBIT_ variable orbit needs is set and valid"
    assert ran.line("database").startswith("✓ database: sqlite:///")
    why = (
        "skipped: an ingest process (ORBIT_ROLE=ingest) acts as no App and needs no cluster;"
        " run `orbit doctor` where the workers run"
    )
    assert ran.line("GitHub App") == f"⚠ GitHub App: {why}"
    assert ran.line("Kubernetes") == f"⚠ Kubernetes: {why}"


def test_each_half_configured_feature_is_a_warning_not_a_failure(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    warnings = ["deploys stay off: ORBIT_REGISTRY is set but ORBIT_PUBLIC_DOMAIN is not", "another"]
    monkeypatch.setattr(Settings, "warnings", lambda self: warnings, raising=False)

    ran = install.run(monkeypatch, capsys)

    assert [line for line in ran.lines if line.startswith("⚠ settings")] == [
        f"⚠ settings: {w}" for w in warnings
    ]
    assert ran.status == 0


# --- database ---


def test_missing_tables(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'old.db'}"
    create_tables(database, inbox.metadata)  # an inbox from before redeliveries were recorded
    install.env["ORBIT_DATABASE_URL"] = database

    ran = install.run(monkeypatch, capsys)

    assert ran.line("database") == (
        f"✗ database: {database} lacks table redelivery_requests — run `orbit serve` once: it creates them"
    )
    assert ran.status == 1


def test_a_missing_database_is_not_created(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "none.db"
    install.env["ORBIT_DATABASE_URL"] = f"sqlite:///{path}"

    ran = install.run(monkeypatch, capsys)

    assert ran.line("database") == (
        f"✗ database: no database at sqlite:///{path} (the file does not exist)"
        " — run `orbit serve` once: it creates them"
    )
    assert not path.exists()
    assert ran.status == 1


def test_an_unreachable_database(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.env["ORBIT_DATABASE_URL"] = f"postgresql+psycopg://orbit:hunter2@127.0.0.1:{free_port()}/orbit"

    ran = install.run(monkeypatch, capsys)

    line = ran.line("database")
    assert line.startswith("✗ database: cannot reach postgresql+psycopg://orbit:***@127.0.0.1:"), line
    assert line.endswith(" — check ORBIT_DATABASE_URL and the server")
    assert "hunter2" not in ran.out
    assert ran.status == 1


def test_a_database_url_that_is_not_one(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.env["ORBIT_DATABASE_URL"] = "orbit.db"

    ran = install.run(monkeypatch, capsys)

    assert ran.line("database") == (
        "✗ database: ORBIT_DATABASE_URL is not a database URL"
        " — set it to sqlite:///orbit.db or postgresql+psycopg://USER@HOST/DB"
    )


# --- Kubernetes ---


def test_an_unreachable_cluster_fails_once(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    install.env["KUBECONFIG"] = str(write_kubeconfig(tmp_path / "dead", dead))

    ran = install.run(monkeypatch, capsys)

    line = ran.line("Kubernetes")
    assert line.startswith(f"✗ Kubernetes: cannot reach {dead}: "), line
    assert line.endswith(" — check the kubeconfig or the bot's network")
    assert not any(line.startswith(("✓ RBAC", "⚠ namespace")) for line in ran.lines)
    assert ran.status == 1


def test_no_kubernetes_configuration(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    install.env["KUBECONFIG"] = str(tmp_path / "absent")

    ran = install.run(monkeypatch, capsys)

    assert ran.line("Kubernetes").startswith("✗ Kubernetes: no configuration: not in a pod and no kubeconfig")
    assert ran.status == 1


def test_one_rbac_verb_missing(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.kube.rbac = granted(render()) - {Access("patch", "services", "models")}

    ran = install.run(monkeypatch, capsys)

    assert ran.line("RBAC in models") == (
        "✗ RBAC in models: not granted: patch services — apply deploy/k8s"
        " (kubectl apply -k deploy/k8s/overlays/single): the Role orbit-deployer and its RoleBinding"
        " to the bot's service account"
    )
    assert ran.line("RBAC in orbit-runners").startswith("✓")
    assert ran.status == 1


def test_deploys_off_skip_the_models_rbac(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    del install.env["ORBIT_REGISTRY"], install.env["ORBIT_PUBLIC_DOMAIN"]
    install.kube.rbac = granted(render()) - {Access("patch", "services", "models")}

    ran = install.run(monkeypatch, capsys)

    assert ran.line("RBAC for models") == (
        "⚠ RBAC for models: skipped: deploys are off (they need ORBIT_REGISTRY and ORBIT_PUBLIC_DOMAIN)"
    )
    assert ran.status == 0


def test_a_namespace_missing_where_the_client_may_read_namespaces(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.kube.rbac = granted(render()) | {Access("get", "namespaces", "*")}  # an admin's kubeconfig
    install.kube.namespaces = {"orbit", "orbit-runners"}

    ran = install.run(monkeypatch, capsys)

    assert ran.line("namespace orbit-runners") == "✓ namespace orbit-runners: exists"
    assert ran.line("namespace models") == (
        "✗ namespace models: does not exist — apply deploy/k8s (kubectl apply -k deploy/k8s/overlays/single),"
        " or set the namespace's setting to one that exists"
    )
    assert ran.status == 1


NODE_LISTER = {Access("list", "nodes", "")}


def node(name: str, gpus: str | None) -> dict[str, Any]:
    allocatable = {"cpu": "8"} | ({"nvidia.com/gpu": gpus} if gpus is not None else {})
    return {"metadata": {"name": name}, "status": {"allocatable": allocatable}}


def test_gpu_nodes_when_nodes_may_be_listed(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.kube.rbac = granted(render()) | NODE_LISTER
    install.kube.nodes = [node("cpu-1", None), node("gpu-1", "2"), node("gpu-2", "0")]

    ran = install.run(monkeypatch, capsys)

    assert ran.line("GPU nodes") == "✓ GPU nodes: 1 of 3 nodes advertise nvidia.com/gpu"
    assert ran.status == 0


def test_no_node_advertises_the_gpu_resource(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.kube.rbac = granted(render()) | NODE_LISTER
    install.kube.nodes = [node("cpu-1", None), node("gpu-1", "0")]

    ran = install.run(monkeypatch, capsys)

    assert ran.line("GPU nodes") == (
        "✗ GPU nodes: none of 2 nodes advertises nvidia.com/gpu — install the GPU Operator (or the device"
        " plugin) on the GPU nodes; ORBIT_GPU_RESOURCE names the resource"
    )
    assert ran.status == 1


def test_an_image_pull_secret_orbit_may_not_read_is_not_a_failure(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.env["ORBIT_IMAGE_PULL_SECRET"] = "regcred"

    ran = install.run(monkeypatch, capsys)

    assert ran.line("image pull secret") == (
        "⚠ image pull secret: cannot tell whether models/regcred exists: orbit may not read Secrets there"
        " — kubectl -n models get secret regcred"
    )
    assert ran.status == 0


def test_a_missing_image_pull_secret_where_it_may_be_read(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.env["ORBIT_IMAGE_PULL_SECRET"] = "regcred"
    install.kube.rbac = granted(render()) | {Access("get", "secrets", "models")}

    missing = install.run(monkeypatch, capsys)
    install.kube.objects[("secrets", "models", "regcred")] = {"metadata": {"name": "regcred"}, "data": {}}
    present = install.run(monkeypatch, capsys)

    assert missing.line("image pull secret").startswith(
        "✗ image pull secret: models/regcred does not exist — kubectl -n models create secret docker-registry"
    )
    assert missing.status == 1
    assert present.line("image pull secret") == "✓ image pull secret: models/regcred exists"
    assert present.status == 0


def test_a_runner_image_that_is_no_reference(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.env["ORBIT_RUNNER_IMAGE"] = "ghcr.io/Orbit/runner gpu"

    ran = install.run(monkeypatch, capsys)

    assert ran.line("runner images") == (
        "✗ runner images: ORBIT_RUNNER_IMAGE is not an image reference"
        " — set it to HOST/REPOSITORY:TAG, e.g. ghcr.io/orbit/runner-gpu:1.4.0"
    )
    assert ran.status == 1


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("ghcr.io/orbit/runner-gpu:latest", True),
        ("registry.local:5000/team/runner@sha256:" + "a" * 64, True),
        ("python:3.11-slim", True),
        ("[::1]:5000/runner:1", True),
        ("ghcr.io/Orbit/runner:1", False),  # repositories are lower case
        ("ghcr.io/orbit/runner:", False),
        ("ghcr.io/orbit/runner:1@sha256:short", False),
        ("", False),
    ],
)
def test_image_references(image: str, ok: bool) -> None:
    assert bool(IMAGE_REFERENCE.match(image)) is ok


# --- DVC ---


def test_a_local_dvc_remote(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (install.root / ".dvc").mkdir()
    (install.root / ".dvc/config").write_text(
        "[core]\n    remote = local\n['remote \"local\"']\n    url = ../store\n"
    )

    missing = install.run(monkeypatch, capsys)
    (install.root / "store").mkdir()
    present = install.run(monkeypatch, capsys)

    assert missing.line("DVC remote") == (
        f"✗ DVC remote: local: {install.root / 'store'} does not exist"
        " — create it, or `dvc remote modify local url ...`"
    )
    assert missing.status == 1
    assert present.line("DVC remote") == f"✓ DVC remote: local: {install.root / 'store'}"
    assert present.status == 0


def test_a_remote_the_doctor_cannot_reach_without_dvc_is_said(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (install.root / ".dvc").mkdir()
    (install.root / ".dvc/config").write_text(
        "[core]\nremote = s3\n['remote \"s3\"']\nurl = s3://bucket/dvc\n"
    )

    ran = install.run(monkeypatch, capsys)

    assert ran.line("DVC remote") == (
        "⚠ DVC remote: s3: s3://bucket/dvc not checked (no DVC here) — `dvc status --cloud` checks it"
    )


# --- what orbit needs, said once in the code, checked against the files that say it too ---


def test_the_app_manifest_asks_for_what_the_doctor_checks() -> None:
    manifest = yaml.safe_load((ROOT / ".github/app.yml").read_text())

    assert manifest["default_permissions"] == dict(app_manifest.PERMISSIONS)
    assert manifest["default_events"] == list(app_manifest.EVENTS)


def role_grants(path: Path, place: str) -> set[Grant]:
    role = yaml.safe_load(path.read_text())
    return {
        Grant(verb, group, resource, place)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_rbac_the_doctor_checks_is_what_the_roles_grant() -> None:
    base = ROOT / "deploy/k8s/base"
    expected = role_grants(base / "runners/role.yaml", RUNNERS) | role_grants(
        base / "models/role.yaml", MODELS
    )

    assert len(set(NEEDED)) == len(NEEDED)
    assert set(NEEDED) == expected


# --- as a process ---


@pytest.mark.slow
def test_orbit_doctor_as_a_process(install: Install, tmp_path: Path) -> None:
    install.github.app_events.remove("workflow_run")
    install.kube.rbac = granted(render()) - {Access("create", "pods", "orbit-runners")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORBIT_", "KUBERNETES_"))}

    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "doctor", "--project", str(tmp_path)],
        env=env | install.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2, done.stdout + done.stderr
    failed = [line for line in done.stdout.splitlines() if line.startswith("✗")]
    assert [line.split(":")[0] for line in failed] == ["✗ App events", "✗ RBAC in orbit-runners"]
    assert "not granted: create pods" in failed[1]
    assert done.stdout.splitlines()[-1] == "2 checks failed"


def test_an_error_answer_fails_its_own_check_only(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install.github.app_failures["/app/hook/config"] = 500

    ran = install.run(monkeypatch, capsys)

    assert ran.line("webhook") == (
        "✗ webhook: GitHub answered 500 — try again;"
        f" if it stays, check {install.env['ORBIT_GITHUB_API_URL']}"
    )
    assert ran.line("deliveries").startswith("✓")
    assert ran.status == 1


def test_github_out_of_reach(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    install.env["ORBIT_GITHUB_API_URL"] = dead

    ran = install.run(monkeypatch, capsys)

    assert ran.line("GitHub App") == (
        f"✗ GitHub App: cannot reach GitHub: RequestError at {dead}/app"
        " — check ORBIT_GITHUB_API_URL and that this machine reaches GitHub"
    )
    assert ran.line("webhook") == "⚠ webhook: skipped: the GitHub App check failed"
    assert ran.status == 1


def test_a_half_configured_deploy_is_said_by_the_settings(
    install: Install, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    del install.env["ORBIT_PUBLIC_DOMAIN"]

    ran = install.run(monkeypatch, capsys)

    (warning,) = [line for line in ran.lines if line.startswith("⚠ settings: ")]
    assert "ORBIT_PUBLIC_DOMAIN" in warning
    assert ran.status == 0

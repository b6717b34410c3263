"""What the project ships for GitHub and Kubernetes passes the official schemas, linters and audits."""

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import validate

from bot.runs import (
    DeployRun,
    TrainingRun,
    deploy_run,
    training_job_name,
    training_job_pull,
    training_run,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))


def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    executable = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert executable, f"{name} is not installed"
    return subprocess.run([str(executable), *args], cwd=ROOT, capture_output=True, text=True, check=False)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_workflows_pass_zizmor_with_no_finding_of_medium_severity_or_above() -> None:
    result = tool("zizmor", "--offline", "--min-severity", "medium", *map(str, WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout + result.stderr


def test_workflows_match_github_actions_schema() -> None:
    result = tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_train_workflow_runs_on_orbit_gpu_with_least_privilege() -> None:
    workflow = load(ROOT / ".github/workflows/train.yml")
    job = workflow["jobs"]["train"]
    assert job["runs-on"] == ["self-hosted", "orbit-gpu"]
    assert workflow["permissions"] == {}
    assert job["permissions"] == {"contents": "read"}
    assert set(workflow[True]["workflow_dispatch"]["inputs"]) == {
        "pr",
        "sha",
        "base",
    }  # PyYAML reads `on` as True
    assert (
        workflow["run-name"].replace("${{ inputs.pr }}", "7").replace("${{ inputs.sha }}", "abc1234")
        == TrainingRun(7, "abc1234").title
    )
    checkout = job["steps"][0]
    assert checkout["with"]["ref"] == "refs/pull/${{ inputs.pr }}/head"
    assert checkout["with"]["persist-credentials"] is False
    for step in job["steps"]:
        assert "${{" not in step.get("run", ""), "inputs reach scripts through env, never by template"
    commands = [step.get("run", "") for step in job["steps"]]
    assert [c for c in commands if c.startswith(("dvc", "orbit"))] == [
        "dvc pull --allow-missing",
        'dvc repro 2>&1 | tee "$RUNNER_TEMP/repro.log"',
        "dvc push",
        'orbit report build --base "$BASE" --out "$RUNNER_TEMP/orbit-report" '
        '--repro-log "$RUNNER_TEMP/repro.log" --started "$STARTED"',
    ]
    train = next(step for step in job["steps"] if step.get("id") == "train")
    assert train["shell"] == "bash", "pipefail, so that a failed stage fails the step despite tee"
    report, upload = job["steps"][-2:]
    assert "failure" in report["if"], "a failed stage still gets its report"
    assert upload["with"]["name"] == "orbit-report"
    assert upload["with"]["path"] == "${{ runner.temp }}/orbit-report"


def test_runner_dockerfile_passes_hadolint() -> None:
    result = tool("hadolint", "deploy/runner/Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def rendered(folder: str = "deploy/k8s") -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render deploy/k8s"
    output = subprocess.run(
        [kubectl, "kustomize", str(ROOT / folder)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(output.stdout) if doc]


def test_bot_manifests_render_and_validate() -> None:
    objects = rendered()
    assert {o["kind"] for o in objects} >= {
        "Deployment",
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
    }
    for manifest in objects:
        validate(manifest, "1.30.0", strict=True)
        assert manifest["metadata"]["namespace"] == "orbit" or manifest["kind"] in ("ClusterRole",)


def test_the_role_grants_exactly_the_verbs_the_bot_uses() -> None:
    (role,) = [o for o in rendered() if o["kind"] == "Role"]
    granted = {
        (resource, verb) for rule in role["rules"] for resource in rule["resources"] for verb in rule["verbs"]
    }
    assert granted == {
        ("pods", "create"),
        ("pods", "get"),
        ("pods", "list"),
        ("pods", "delete"),
        ("secrets", "create"),
        ("secrets", "delete"),
        ("events", "list"),
    }
    assert all(o["kind"] not in ("ClusterRole", "ClusterRoleBinding") for o in rendered())


@pytest.mark.parametrize("kind", ["Deployment"])
def test_the_bot_runs_unprivileged(kind: str) -> None:
    (deployment,) = [o for o in rendered() if o["kind"] == kind]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert "value" not in str([e for e in container["env"] if "SECRET" in e["name"]])


def test_app_manifest_asks_for_the_least_permissions() -> None:
    manifest = load(ROOT / ".github/app.yml")
    assert manifest["default_permissions"] == {
        "actions": "write",
        "administration": "write",
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
    role, binding = rendered("deploy/k8s/models")
    for manifest in (role, binding):
        validate(manifest, "1.30.0", strict=True)
        assert manifest["metadata"]["namespace"] == "models"
    rules = {
        (rule["apiGroups"][0], resource): set(rule["verbs"])
        for rule in role["rules"]
        for resource in rule["resources"]
    }
    applied = {"get", "patch", "delete"}
    assert rules == {
        ("apps", "deployments"): applied,
        ("", "services"): applied,
        ("networking.k8s.io", "ingresses"): applied,
        ("autoscaling", "horizontalpodautoscalers"): applied,
        ("policy", "poddisruptionbudgets"): applied,
        ("", "pods"): {"list"},
        ("", "services/proxy"): {"get", "create"},
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "orbit", "namespace": "orbit"}]


def _render(template: str, inputs: dict[str, str]) -> str:
    for name, value in inputs.items():
        template = template.replace(f"${{{{ inputs.{name} }}}}", value)
    return template


@pytest.mark.parametrize(
    ("path", "run"),
    [
        ("train.yml", TrainingRun(7, "abc1234", "main")),
        ("deploy.yml", DeployRun(7, "pr-7", 31, "d" * 40)),
    ],
)
def test_each_workflow_keeps_the_run_contract_the_bot_dispatches_and_recognises(
    path: str, run: TrainingRun | DeployRun
) -> None:
    workflow = yaml.safe_load((ROOT / ".github/workflows" / path).read_text())
    declared = workflow[True]["workflow_dispatch"]["inputs"]
    assert set(declared) == set(run.inputs), "the inputs the bot sends are exactly those declared"
    assert _render(workflow["run-name"], run.inputs) == run.title
    parsed = training_run(run.title) if isinstance(run, TrainingRun) else deploy_run(run.title)
    assert parsed == (replace(run, base="") if isinstance(run, TrainingRun) else run)
    if isinstance(run, TrainingRun):
        [job] = workflow["jobs"].values()
        assert _render(job["name"], run.inputs) == training_job_name(run.pull)
        assert training_job_pull(training_job_name(run.pull)) == run.pull

"""Deploying over HTTP doubles of GitHub and Kubernetes with the real clients: triggers, deployments and
every status transition, the rollout, failures with the previous model restored, previews, rollback."""

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from bot import commands
from bot.context import Context
from bot.events import ordering_key
from bot.github import GitHubAppClient
from bot.router import Router
from bot.runs import DeployRun
from deploy.flow import Deployer, DeployPreview, Rollback, router_for
from deploy.kube import KubeModelCluster
from deploy.rollout import Timing
from tests.bot.test_github_client import PEM
from tests.fakes import comment_payload, delivery, memory_inbox
from tests.github_double import GitHubState, serve_github
from tests.kube_double import KubeState, serve_kube

REGISTRY = "registry.example.com/octo-org"
MERGED = "e" * 40
HEAD = "f" * 40
SERVICE = "model-b18167c7cc272d64"  # octo-org/model's objects: its name and 64 bits of a hash of owner/name


def digest(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64


@pytest.fixture
def github() -> GitHubState:
    state = GitHubState()
    state.reports.pulls[7] = {
        "number": 7,
        "state": "open",
        "draft": False,
        "head": {"sha": HEAD, "repo": {"full_name": "octo-org/model"}},
        "base": {"ref": "main", "repo": {"full_name": "octo-org/model", "default_branch": "main"}},
    }
    return state


@pytest.fixture
def kube() -> KubeState:
    return KubeState()


@pytest.fixture
def setup(github: GitHubState, kube: KubeState) -> Iterator[tuple[Context, Router]]:
    with serve_github(github) as github_url, serve_kube(kube) as kube_url:
        cluster = KubeModelCluster("models", client.ApiClient(client.Configuration(host=kube_url)))
        deployer = Deployer(
            cluster, "models", "", REGISTRY, "models.example.com", "letsencrypt", None, Timing(0.3, 0.02)
        )
        api = GitHubAppClient(4242, PEM.decode(), github_url).for_installation(42)
        features = {"deploy": DeployPreview(), "rollback": Rollback(deployer)}
        router = Router.compose([router_for(deployer), commands.router])
        yield Context(api, memory_inbox(), features), router  # type: ignore[arg-type]


async def handle(setup: tuple[Context, Router], event: str, payload: dict[str, Any]) -> None:
    context, router = setup
    given = delivery(event, payload)
    for handler in router.handlers_for(event, given.action):
        await handler(given, context)


def closed(number: int = 7, merged: bool = True) -> dict[str, Any]:
    return {
        "action": "closed",
        "pull_request": {
            "number": number,
            "merged": merged,
            "merge_commit_sha": MERGED if number == 7 else f"{number:040x}",  # each merge its own commit
            "base": {"ref": "main"},
        },
        "repository": {"full_name": "octo-org/model", "default_branch": "main"},
        "installation": {"id": 42},
    }


def dispatched(github: GitHubState, deployment: int) -> dict[str, Any]:
    """Return the deploy.yml run orbit dispatched for a deployment (GitHub's double started it)."""
    [run] = [r for r in github.reports.runs.values() if f"(deployment {deployment})" in r["display_title"]]
    return run


def built(
    github: GitHubState,
    deployment: int,
    environment: str,
    sha: str,
    run: int,
    image: dict[str, str] | None,
    conclusion: str = "success",
    pull: int = 7,
) -> dict[str, Any]:
    """Return the completion of the deployment's build run; `run` names a run orbit did not dispatch."""
    started = next(
        (r for r in github.reports.runs.values() if f"(deployment {deployment})" in r["display_title"]), None
    )
    fields: dict[str, Any] = (
        dict(started)
        if started
        else {"id": run, "display_title": DeployRun(pull, environment, deployment, sha).title}
    )
    run = int(fields["id"])
    if image is not None:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("image.json", json.dumps(image))
        github.reports.artifacts[run] = [
            {"id": 900 + run, "name": "orbit-image", "expired": False, "size_in_bytes": 1}
        ]
        github.reports.artifact_zips[900 + run] = out.getvalue()
    return {
        "action": "completed",
        "workflow_run": {
            **fields,
            "status": "completed",
            "conclusion": conclusion,
            "html_url": f"https://github.com/octo-org/model/actions/runs/{run}",
        },
        "repository": {"full_name": "octo-org/model"},
        "installation": {"id": 42},
    }


def states(github: GitHubState, deployment: int) -> list[str]:
    return [status["state"] for status in reversed(github.reports.deployment_statuses.get(deployment, []))]


def served_image(kube: KubeState) -> str:
    found = kube.objects[("deployments", "models", SERVICE)]
    return str(found["spec"]["template"]["spec"]["containers"][0]["image"])


async def deploy_production(setup: tuple[Context, Router], github: GitHubState, n: int, pull: int = 7) -> int:
    """Merge PR `pull`, then complete its build with image digest `n`; return the deployment id."""
    await handle(setup, "pull_request", closed(pull))
    deployment = github.reports.deployments[0]["id"]
    image = {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(n)}
    await handle(
        setup, "workflow_run", built(github, deployment, "production", MERGED, 100 + n, image, pull=pull)
    )
    return int(deployment)


async def test_a_merged_pr_creates_the_production_deployment_and_dispatches_the_build(
    setup: tuple[Context, Router], github: GitHubState
) -> None:
    await handle(setup, "pull_request", closed())
    [deployment] = github.reports.deployments
    assert deployment["ref"] == MERGED and deployment["environment"] == "production"
    assert deployment["production_environment"] is True and deployment["transient_environment"] is False
    assert (
        deployment["payload"] == {"pr": 7, "trigger": f"merge:{MERGED}"} and deployment["auto_merge"] is False
    )
    assert states(github, deployment["id"]) == ["queued"]
    assert github.reports.dispatches == [
        {
            "workflow": "deploy.yml",
            "ref": "main",
            "inputs": {
                "sha": MERGED,
                "environment": "production",
                "deployment": str(deployment["id"]),
                "pr": "7",
            },
            "return_run_details": True,
        }
    ]


async def test_a_closed_unmerged_pr_is_not_deployed(
    setup: tuple[Context, Router], github: GitHubState
) -> None:
    await handle(setup, "pull_request", closed(merged=False))
    assert github.reports.deployments == [] and github.reports.dispatches == []


async def test_a_finished_build_is_rolled_out_and_reported(
    setup: tuple[Context, Router], github: GitHubState, kube: KubeState
) -> None:
    deployment = await deploy_production(setup, github, 1)
    assert served_image(kube) == f"{REGISTRY}/{SERVICE}@{digest(1)}"
    assert states(github, deployment) == ["queued", "in_progress", "success"]
    success = github.reports.deployment_statuses[deployment][0]
    assert success["environment_url"] == f"https://{SERVICE}.models.example.com"
    assert (
        success["log_url"]
        == f"https://github.com/octo-org/model/actions/runs/{dispatched(github, deployment)['id']}"
    )
    comment = github.comments[-1]["body"]
    assert f"Production serves `eeeeeee` at https://{SERVICE}.models.example.com" in comment
    assert f"curl -F image=@saturn.png https://{SERVICE}.models.example.com/predict" in comment


async def test_a_failed_build_leaves_production_as_it_was(
    setup: tuple[Context, Router], github: GitHubState, kube: KubeState
) -> None:
    await deploy_production(setup, github, 1)
    await handle(setup, "pull_request", closed(8))
    second = github.reports.deployments[0]["id"]
    await handle(
        setup, "workflow_run", built(github, second, "production", MERGED, 300, None, "failure", pull=8)
    )
    assert states(github, second) == ["queued", "failure"]
    assert github.reports.deployment_statuses[second][0]["description"] == "the image build failure"
    assert "Production still serves the previous model" in github.comments[-1]["body"]
    assert served_image(kube).endswith(digest(1))


async def test_a_crash_looping_model_is_rolled_back_and_said_so(
    setup: tuple[Context, Router], github: GitHubState, kube: KubeState
) -> None:
    await deploy_production(setup, github, 1)
    kube.behaviour[f"{REGISTRY}/{SERVICE}@{digest(2)}"] = "crashloop"
    second = await deploy_production(setup, github, 2, pull=8)
    assert states(github, second) == ["queued", "in_progress", "failure"]
    assert "crash-looping" in github.reports.deployment_statuses[second][0]["description"]
    assert "Production still serves the previous model (`eeeeeee`)" in github.comments[-1]["body"]
    assert served_image(kube).endswith(digest(1))


async def test_an_image_outside_the_registry_is_refused(
    setup: tuple[Context, Router], github: GitHubState, kube: KubeState
) -> None:
    await handle(setup, "pull_request", closed())
    deployment = github.reports.deployments[0]["id"]
    image = {"image": "evil.example.com/x", "digest": digest(3)}
    await handle(setup, "workflow_run", built(github, deployment, "production", MERGED, 400, image))
    assert states(github, deployment) == ["queued", "failure"]
    assert (
        "not in the configured registry" in github.reports.deployment_statuses[deployment][0]["description"]
    )
    assert kube.applied == []


async def test_the_newest_deployment_of_an_environment_wins(
    setup: tuple[Context, Router], github: GitHubState, kube: KubeState
) -> None:
    await handle(setup, "pull_request", closed(7))
    older = github.reports.deployments[0]["id"]
    await handle(setup, "pull_request", closed(8))
    newer = github.reports.deployments[0]["id"]
    image = {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(4)}
    await handle(setup, "workflow_run", built(github, older, "production", MERGED, 500, image))
    assert states(github, older) == ["queued", "inactive"]
    assert kube.applied == []
    await handle(setup, "workflow_run", built(github, newer, "production", MERGED, 501, image, pull=8))
    assert states(github, newer) == ["queued", "in_progress", "success"]


async def test_deploy_gives_a_pr_a_preview_and_closing_tears_it_down(
    setup: tuple[Context, Router], github: GitHubState, kube: KubeState
) -> None:
    await handle(setup, "issue_comment", comment_payload("/deploy"))
    [deployment] = github.reports.deployments
    assert (deployment["environment"], deployment["ref"], deployment["transient_environment"]) == (
        "pr-7",
        HEAD,
        True,
    )
    assert github.reports.dispatches[0]["inputs"]["environment"] == "pr-7"
    image = {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(5)}
    await handle(setup, "workflow_run", built(github, deployment["id"], "pr-7", HEAD, 600, image))
    assert github.reports.deployment_statuses[deployment["id"]][0]["environment_url"] == (
        f"https://pr-7.{SERVICE}.models.example.com"
    )
    assert ("deployments", "models", f"{SERVICE}-pr-7") in kube.objects
    await handle(setup, "pull_request", closed(merged=False))
    assert not [key for key in kube.objects if key[0] in ("deployments", "services", "ingresses")]
    assert states(github, deployment["id"])[-1] == "inactive"


async def test_deploy_and_rollback_need_write_permission(
    setup: tuple[Context, Router], github: GitHubState
) -> None:
    github.permission = "read"
    for command in ("/deploy", "/rollback"):
        await handle(setup, "issue_comment", comment_payload(command))
        assert "needs write access" in github.comments[-1]["body"]
    assert github.reports.deployments == []


async def test_rollback_restores_the_model_before_the_pr(
    setup: tuple[Context, Router], github: GitHubState, kube: KubeState
) -> None:
    await deploy_production(setup, github, 1, pull=6)
    await deploy_production(setup, github, 2, pull=7)
    assert served_image(kube).endswith(digest(2))
    await handle(setup, "issue_comment", comment_payload("/rollback", number=7))
    assert served_image(kube).endswith(digest(1))
    rollback = github.reports.deployments[0]
    assert rollback["payload"]["rollback_to"] == github.reports.deployments[2]["id"]
    assert states(github, rollback["id"]) == ["in_progress", "success"]
    assert "Production serves `0000000` again, the model from before PR #7" in github.comments[-1]["body"]
    await handle(setup, "issue_comment", comment_payload("/rollback", number=9))
    assert "PR #9 is not among production's recorded rollouts" in github.comments[-1]["body"]


def test_production_builds_are_ordered_together_whatever_their_pr() -> None:
    payload = {
        "workflow_run": {"display_title": DeployRun(7, "production", 3, MERGED).title},
        "repository": {"full_name": "octo-org/model"},
    }
    assert ordering_key(delivery("workflow_run", payload)) == "octo-org/model@production"
    payload["workflow_run"]["display_title"] = DeployRun(7, "pr-7", 3, MERGED).title
    assert ordering_key(delivery("workflow_run", payload)) == "octo-org/model#7"


async def test_a_preview_built_after_its_pr_closed_is_not_rolled_out(
    setup: tuple[Context, Router], github: GitHubState, kube: KubeState
) -> None:
    await handle(setup, "issue_comment", comment_payload("/deploy"))
    deployment = github.reports.deployments[0]["id"]
    github.reports.pulls[7]["state"] = "closed"
    image = {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(6)}
    await handle(setup, "workflow_run", built(github, deployment, "pr-7", HEAD, 700, image))
    assert states(github, deployment) == ["queued", "inactive"]
    assert kube.applied == []


@pytest.mark.parametrize(
    "forgery",
    [
        {"path": ".github/workflows/pr.yml", "event": "pull_request"},  # a fork PR's own workflow
        {"head_repository": {"full_name": "mallory/model"}},
        {"head_sha": "f" * 40},
        {"id": 777},  # a run orbit never dispatched, named exactly like the real one
    ],
    ids=["fork-workflow", "fork-code", "other-commit", "unrecorded-id"],
)
async def test_a_forged_deploy_run_rolls_nothing_out(
    setup: tuple[Context, Router], github: GitHubState, kube: KubeState, forgery: dict[str, Any]
) -> None:
    await handle(setup, "pull_request", closed())
    deployment = github.reports.deployments[0]["id"]
    evil = {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(66)}  # an attacker's image, in the registry
    payload = built(github, deployment, "production", MERGED, 0, evil)
    payload["workflow_run"].update(forgery)
    if "id" in forgery:
        github.reports.artifacts[777] = github.reports.artifacts[dispatched(github, deployment)["id"]]
    await handle(setup, "workflow_run", payload)
    assert kube.applied == [], "nothing reaches production"
    assert states(github, deployment) == ["queued"], "no deployment status is set"


async def test_a_replayed_build_completion_rolls_out_once(
    setup: tuple[Context, Router], github: GitHubState, kube: KubeState
) -> None:
    deployment = await deploy_production(setup, github, 1)
    applied, comments = len(kube.applied), len(github.comments)
    image = {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(1)}
    await handle(setup, "workflow_run", built(github, deployment, "production", MERGED, 0, image))
    assert len(kube.applied) == applied and len(github.comments) == comments
    assert states(github, deployment) == ["queued", "in_progress", "success"]


async def test_a_redelivered_merge_creates_one_deployment_and_one_build(
    setup: tuple[Context, Router], github: GitHubState
) -> None:
    for _ in range(2):
        await handle(setup, "pull_request", closed())
    assert len(github.reports.deployments) == 1
    assert len(github.reports.dispatches) == 1


async def test_an_image_artifact_over_the_limit_fails_the_deployment(
    setup: tuple[Context, Router], github: GitHubState, kube: KubeState
) -> None:
    await handle(setup, "pull_request", closed())
    deployment = github.reports.deployments[0]["id"]
    payload = built(
        github, deployment, "production", MERGED, 0, {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(5)}
    )
    github.reports.artifacts[payload["workflow_run"]["id"]][0]["size_in_bytes"] = 5 * 1024 * 1024
    await handle(setup, "workflow_run", payload)
    assert states(github, deployment) == ["queued", "failure"]
    description = github.reports.deployment_statuses[deployment][0]["description"]
    assert "at most 1,048,576 bytes are read" in description
    assert kube.applied == []


async def test_deploy_of_a_fork_builds_only_the_commit_the_writer_names(
    setup: tuple[Context, Router], github: GitHubState
) -> None:
    github.reports.pulls[7]["head"]["repo"] = {"full_name": "mallory/model"}
    await handle(setup, "issue_comment", comment_payload("/deploy"))
    assert github.reports.deployments == [] and github.reports.dispatches == []
    assert f"/deploy {HEAD}" in github.comments[-1]["body"], "the reply names the whole head to confirm"
    confirmed = comment_payload(f"/deploy {HEAD}")
    confirmed["comment"]["id"] = 3007  # a second comment
    await handle(setup, "issue_comment", confirmed)
    [deployment] = github.reports.deployments
    assert deployment["ref"] == HEAD and deployment["environment"] == "pr-7"


async def test_a_deployment_another_workflow_made_does_not_supersede_orbits(
    setup: tuple[Context, Router], github: GitHubState, kube: KubeState
) -> None:
    await handle(setup, "issue_comment", comment_payload("/deploy"))
    [deployment] = github.reports.deployments
    # A fork's workflow with a job `environment: pr-7`: GitHub makes a newer deployment for it.
    github.reports.deployments.insert(
        0, {"id": deployment["id"] + 1, "sha": "f" * 40, "environment": "pr-7", "payload": {}}
    )
    image = {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(6)}
    await handle(setup, "workflow_run", built(github, deployment["id"], "pr-7", HEAD, 0, image))
    assert states(github, deployment["id"]) == ["queued", "in_progress", "success"]
    assert ("deployments", "models", f"{SERVICE}-pr-7") in kube.objects

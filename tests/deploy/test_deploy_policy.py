"""Production and the gates, over HTTP doubles of GitHub and Kubernetes with the real clients: the deploy
policy of `.github/orbit.yml`, a failed gate refusing the merge, an admin's `/deploy --force`, the report's
link on the deployment."""

from typing import Any

import pytest

from bot.context import Context
from bot.router import Router
from tests.deploy.test_deploys import (  # noqa: F401 - fixtures
    HEAD,
    MERGED,
    REGISTRY,
    SERVICE,
    built,
    closed,
    digest,
    github,
    handle,
    kube,
    setup,
    states,
)
from tests.fakes import comment_payload
from tests.github_double import GitHubState
from tests.kube_double import KubeState

REPORT = "https://github.com/octo-org/model/runs/7100"
FAILED = "Gate failed: val_acc >= 0.95 (val_acc is 0.9)"
Setup = tuple[Context, Router]


def trained(state: GitHubState, title: str, conclusion: str = "success", app: str = "orbit") -> None:
    """Give the PR's head an `orbit/train` check run (made by `app`) that completed with this title."""
    check_id = 7100 + len(state.reports.check_runs)
    state.reports.check_runs[check_id] = {
        "id": check_id,
        "name": "orbit/train",
        "head_sha": HEAD,
        "status": "completed",
        "conclusion": conclusion,
        "output": {"title": title, "summary": ""},
        "app": {"slug": app},
        "html_url": f"https://github.com/octo-org/model/runs/{check_id}",
    }


def merged(state: GitHubState, policy: str = "on_merge", gates: bool = False) -> None:
    state.reports.pulls[7] |= {"state": "closed", "merged": True, "merge_commit_sha": MERGED}
    gate = "gates:\n  thresholds: ['val_acc >= 0.95']\n" if gates else ""
    state.files[(".github/orbit.yml", "main")] = f"{gate}deploy:\n  production: {policy}\n"


def comment(body: str, comment_id: int) -> dict[str, Any]:
    payload = comment_payload(body)
    payload["comment"]["id"] = comment_id
    return payload


def replies(state: GitHubState) -> list[str]:
    """Return the bot's comments without their hidden markers (the reply's comment id, a refusal's key)."""
    return [
        "\n".join(line for line in str(c["body"]).splitlines() if not line.startswith("<!--"))
        for c in state.comments
    ]


@pytest.fixture
def gated(github: GitHubState) -> GitHubState:  # noqa: F811 - the fixture
    merged(github)
    trained(github, FAILED, "failure")
    return github


async def test_a_merge_that_failed_a_gate_is_not_deployed_and_the_pr_is_told_once(
    setup: Setup,  # noqa: F811 - the fixture
    gated: GitHubState,
) -> None:
    for _ in range(2):  # a redelivered merge
        await handle(setup, "pull_request", closed())
    assert gated.reports.deployments == [] and gated.reports.dispatches == []
    [told] = [body for body in replies(gated) if "Production was not deployed" in body]
    assert "did not pass its gates: `val_acc >= 0.95 (val_acc is 0.9)`" in told
    assert "An admin can comment `/deploy --force`" in told


async def test_a_check_run_of_another_app_does_not_lift_a_gate(
    setup: Setup,  # noqa: F811 - the fixture
    gated: GitHubState,
) -> None:
    trained(gated, "val_acc 0.99", "success", app="mallory-ci")  # newer, named orbit/train, not orbit's
    await handle(setup, "pull_request", closed())
    assert gated.reports.deployments == []


async def test_a_merge_that_passed_its_gates_ships_with_the_reports_link(
    setup: Setup,  # noqa: F811 - the fixture
    github: GitHubState,  # noqa: F811 - the fixture
    kube: KubeState,  # noqa: F811 - the fixture
) -> None:
    merged(github)
    trained(github, "val_acc 0.96 (+0.01, no significant change)")
    await handle(setup, "pull_request", closed())
    [deployment] = github.reports.deployments
    assert github.reports.dispatches[0]["inputs"]["report_url"] == REPORT
    assert github.reports.deployment_statuses[deployment["id"]][0]["log_url"] == REPORT
    image = {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(1)}
    await handle(setup, "workflow_run", built(github, deployment["id"], "production", MERGED, 100, image))
    assert states(github, deployment["id"]) == ["queued", "in_progress", "success"]
    success = github.reports.deployment_statuses[deployment["id"]][0]
    assert (success["description"], success["log_url"]) == ("serving eeeeeee", REPORT)


async def test_an_admin_forces_a_gated_merge_and_the_statuses_say_so(
    setup: Setup,  # noqa: F811 - the fixture
    gated: GitHubState,
    kube: KubeState,  # noqa: F811 - the fixture
) -> None:
    await handle(setup, "pull_request", closed())
    gated.permission = "admin"
    await handle(setup, "issue_comment", comment("/deploy --force", 3001))
    forced = "forced past gate val_acc >= 0.95 (val_acc is 0.9) by @octocat"
    assert replies(gated)[-1] == f"Building `eeeeeee` for production, as @octocat asked ({forced})."
    [deployment] = gated.reports.deployments
    assert (deployment["environment"], deployment["ref"]) == ("production", MERGED)
    queued = gated.reports.deployment_statuses[deployment["id"]][0]
    assert queued["description"] == f"waiting for the image build; {forced}"
    image = {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(2)}
    await handle(setup, "workflow_run", built(gated, deployment["id"], "production", MERGED, 200, image))
    assert (
        gated.reports.deployment_statuses[deployment["id"]][0]["description"] == f"serving eeeeeee, {forced}"
    )
    assert states(gated, deployment["id"])[-1] == "success"


@pytest.mark.parametrize("permission", ["write", "maintain"])
async def test_a_writer_cannot_force(
    setup: Setup,  # noqa: F811 - the fixture
    gated: GitHubState,
    permission: str,
) -> None:
    gated.permission = permission
    await handle(setup, "issue_comment", comment("/deploy --force", 3002))
    assert replies(gated)[-1] == (
        f"`/deploy --force` needs admin permission, and @octocat has {permission}; nothing was deployed."
    )
    assert gated.reports.deployments == []


async def test_deploy_on_a_gated_merged_pr_without_force_is_refused(
    setup: Setup,  # noqa: F811 - the fixture
    gated: GitHubState,
) -> None:
    await handle(setup, "issue_comment", comment("/deploy", 3003))
    assert "did not pass its gates: `val_acc >= 0.95 (val_acc is 0.9)`" in replies(gated)[-1]
    assert gated.reports.deployments == []


async def test_on_command_a_merge_ships_nothing_and_deploy_on_the_merged_pr_ships_production(
    setup: Setup,  # noqa: F811 - the fixture
    github: GitHubState,  # noqa: F811 - the fixture
) -> None:
    merged(github, "on_command")
    await handle(setup, "pull_request", closed())
    assert github.reports.deployments == [] and github.reports.dispatches == []
    await handle(setup, "issue_comment", comment("/deploy", 3004))
    [deployment] = github.reports.deployments
    assert (deployment["environment"], deployment["ref"]) == ("production", MERGED)
    assert "report_url" not in github.reports.dispatches[0]["inputs"], "no training report, no link"


async def test_an_unknown_flag_is_refused_clearly(
    setup: Setup,  # noqa: F811 - the fixture
    github: GitHubState,  # noqa: F811 - the fixture
) -> None:
    await handle(setup, "issue_comment", comment("/deploy --forse", 3005))
    assert replies(github)[-1] == "`/deploy` knows `--force`, not `--forse`; nothing was deployed."
    assert github.reports.deployments == []


async def test_an_invalid_config_on_the_default_branch_stops_the_merge_with_its_line(
    setup: Setup,  # noqa: F811 - the fixture
    github: GitHubState,  # noqa: F811 - the fixture
) -> None:
    merged(github)
    github.files[(".github/orbit.yml", "main")] = "deploy:\n  production: always\n"
    await handle(setup, "pull_request", closed())
    assert github.reports.deployments == []
    assert ".github/orbit.yml line 2: deploy.production: 'always' is not one of" in replies(github)[-1]


async def test_a_preview_links_the_heads_report(
    setup: Setup,  # noqa: F811 - the fixture
    github: GitHubState,  # noqa: F811 - the fixture
) -> None:
    trained(github, FAILED, "failure")  # a preview is no production: its gates do not stop it
    await handle(setup, "issue_comment", comment("/deploy", 3006))
    [deployment] = github.reports.deployments
    assert deployment["environment"] == "pr-7"
    assert github.reports.dispatches[0]["inputs"]["report_url"] == REPORT


@pytest.mark.parametrize(
    ("checks", "reason"),
    [
        ([], "no orbit/train check at `fffffff`"),  # e.g. a head that only records dvc.lock
        ([("Stage train failed", "failure")], "orbit/train failure at `fffffff`"),
        ([("Training cancelled", "cancelled")], "orbit/train cancelled at `fffffff`"),
        ([(FAILED, "failure"), ("Superseded", "cancelled")], "orbit/train cancelled at `fffffff`"),
    ],
    ids=["no check", "training failed", "cancelled", "a gate failure then a cancelled run"],
)
async def test_a_gated_repository_ships_only_a_head_whose_check_passed(
    setup: Setup,  # noqa: F811 - the fixture
    github: GitHubState,  # noqa: F811 - the fixture
    checks: list[tuple[str, str]],
    reason: str,
) -> None:
    """The attack: get a never-gated model merged by leaving the head without a passing check."""
    github.reports.pulls[7]["head"]["sha"] = HEAD
    merged(github, gates=True)
    for title, conclusion in checks:
        trained(github, title, conclusion)
    await handle(setup, "pull_request", closed())
    assert github.reports.deployments == [] and github.reports.dispatches == []
    [told] = [body for body in replies(github) if "Production was not deployed" in body]
    assert reason in told


async def test_a_repository_without_gates_ships_a_merge_without_a_training_check(
    setup: Setup,  # noqa: F811 - the fixture
    github: GitHubState,  # noqa: F811 - the fixture
) -> None:
    merged(github)  # a PR that never touched the pipeline: nothing to gate
    await handle(setup, "pull_request", closed())
    assert len(github.reports.deployments) == 1

"""Training a pull request: decide whether to train, then queue the check run and dispatch train.yml.

The workflow always runs from the default branch (the trusted copy) and checks out the PR's head.
A newer push or `/retrain` supersedes older runs of the same pull request.
"""

import re

from bot.context import Context
from bot.delivery import Delivery
from bot.github import CheckUpdate, GitHubApi, PullInfo, RunInfo, RunStatus
from bot.payloads import Repo, dig, repository
from bot.router import Router
from runner.config import CONFIG_PATH, RepoConfigError, parse_config, records_outputs_only, touches_pipeline

CHECK_NAME = "orbit/train"
ACTIVE: tuple[RunStatus, ...] = ("queued", "in_progress", "waiting", "requested", "pending")
TRAIN_ACTIONS = ("opened", "synchronize", "reopened", "ready_for_review")
TITLE = re.compile(r"PR #(?P<number>\d+) at (?P<sha>[0-9a-f]{7,40})")

router = Router()


def run_title(number: int, sha: str) -> str:
    """Return the run name train.yml gives itself, which ties a run to its PR and commit."""
    return f"orbit/train PR #{number} at {sha}"


def _pull_from_payload(delivery: Delivery) -> PullInfo | None:
    pull = delivery.payload.get("pull_request")
    number = dig(pull, "number", kind=int)
    head_sha = dig(pull, "head", "sha", kind=str)
    base_repo = dig(pull, "base", "repo", "full_name", kind=str)
    if number is None or head_sha is None or base_repo is None:
        return None
    return PullInfo(
        number=number,
        head_sha=head_sha,
        head_repo=dig(pull, "head", "repo", "full_name", kind=str) or "",
        base_repo=base_repo,
        base_ref=dig(pull, "base", "ref", kind=str) or "",
        default_branch=dig(delivery.payload, "repository", "default_branch", kind=str)
        or dig(pull, "base", "repo", "default_branch", kind=str)
        or "main",
        draft=dig(pull, "draft", kind=bool) or False,
        state=dig(pull, "state", kind=str) or "open",
    )


@router.on("pull_request", *TRAIN_ACTIONS)
async def on_pull_request(delivery: Delivery, ctx: Context) -> None:
    """Train a same-repository, non-draft PR whose changes touch the pipeline."""
    repo, pull = repository(delivery), _pull_from_payload(delivery)
    if repo is None or pull is None or pull.draft or pull.head_repo != pull.base_repo:
        return  # forks are trained only after /retrain by a writer
    try:
        config = parse_config(await ctx.github.file_text(repo, CONFIG_PATH, pull.base_ref))
    except RepoConfigError as error:
        await _report_config_error(ctx.github, repo, pull, str(error))
        return
    if not touches_pipeline(await ctx.github.changed_files(repo, pull.number), config):
        return
    before = dig(delivery.payload, "before", kind=str)
    pushed = (
        await ctx.github.compare_files(repo, before, pull.head_sha)
        if delivery.action == "synchronize" and before
        else []
    )
    if records_outputs_only(pushed):
        return
    if await _already_training(ctx.github, repo, pull.head_sha):
        return  # a redelivery, or a second event for the same commit
    await start_training(ctx.github, repo, pull, config.training.workflow)


async def _already_training(github: GitHubApi, repo: Repo, sha: str) -> bool:
    return any(status != "completed" for _, status in await github.check_runs(repo, sha, CHECK_NAME))


async def _report_config_error(github: GitHubApi, repo: Repo, pull: PullInfo, message: str) -> None:
    check = await github.create_check_run(
        repo, pull.head_sha, CHECK_NAME, "Invalid orbit configuration", message
    )
    update = CheckUpdate(conclusion="action_required", title="Invalid orbit configuration", summary=message)
    await github.update_check_run(repo, check, update)


async def active_runs(github: GitHubApi, repo: Repo, workflow: str, number: int) -> list[tuple[RunInfo, str]]:
    """Return the PR's training runs that have not finished, each with the commit it trains."""
    found = []
    for status in ACTIVE:
        for run in await github.workflow_runs(repo, workflow, status):
            match = TITLE.search(run.title)
            if match is not None and int(match["number"]) == number:
                found.append((run, match["sha"]))
    return found


async def supersede(github: GitHubApi, repo: Repo, number: int, workflow: str, new_sha: str) -> list[int]:
    """Cancel the PR's active training runs and complete their check runs as superseded."""
    cancelled = []
    for run, sha in await active_runs(github, repo, workflow, number):
        await github.cancel_run(repo, run.id)
        cancelled.append(run.id)
        for check_id, check_status in await github.check_runs(repo, sha, CHECK_NAME):
            if check_status != "completed":
                summary = f"Superseded by a newer training run at {new_sha[:7]}."
                update = CheckUpdate(conclusion="cancelled", title="Superseded", summary=summary)
                await github.update_check_run(repo, check_id, update)
    return cancelled


async def start_training(github: GitHubApi, repo: Repo, pull: PullInfo, workflow: str = "train.yml") -> int:
    """Supersede older runs, queue the check run at the head and dispatch the trusted workflow."""
    await supersede(github, repo, pull.number, workflow, pull.head_sha)
    check = await github.create_check_run(
        repo, pull.head_sha, CHECK_NAME, "Training queued", f"Waiting for a GPU runner for PR #{pull.number}."
    )
    inputs = {"pr": str(pull.number), "sha": pull.head_sha, "base": pull.base_ref or pull.default_branch}
    await github.dispatch_workflow(repo, workflow, pull.default_branch, inputs)
    return check


class Retrain:
    """The `/retrain` command: train the PR's head now, forks included (a writer asked for it)."""

    async def __call__(self, github: GitHubApi, repo: Repo, pull_number: int, sender: str, args: str) -> str:
        """Start training and say so."""
        pull = await github.pull_request(repo, pull_number)
        if pull.state != "open":
            return f"PR #{pull_number} is {pull.state}; nothing was trained."
        try:
            config = parse_config(await github.file_text(repo, CONFIG_PATH, pull.base_ref))
        except RepoConfigError as error:
            await _report_config_error(github, repo, pull, str(error))
            return f"`{CONFIG_PATH}` is invalid, so nothing was trained: {error}"
        await start_training(github, repo, pull, config.training.workflow)
        return f"Training `{pull.head_sha[:7]}` on a GPU runner, as @{sender} asked; the report will follow."

"""Training a pull request: decide whether to train, then queue the check run and dispatch train.yml.

The workflow always runs from the default branch (the trusted copy) and checks out the PR's head.
A newer push or `/retrain` supersedes older runs of the same pull request.
"""

import asyncio
import functools

from bot import logs, pinning
from bot.context import CommandCall, Context, Store
from bot.dispatch import dispatch
from bot.events import PullRequestEvent, Repo
from bot.github import CheckUpdate, PullInfo, RunInfo, RunStatus
from bot.github.actions import Workflows
from bot.router import Router
from bot.runs import TRAIN, RecordedRun, TrainingRun, by_trigger, recorded
from runner import checks
from runner.config import CONFIG_PATH, RepoConfigError, parse_config, records_outputs_only, touches_pipeline
from runner.github import TrainingGitHub

ACTIVE: tuple[RunStatus, ...] = ("queued", "in_progress", "waiting", "requested", "pending")
TRAIN_ACTIONS = ("opened", "synchronize", "reopened", "ready_for_review")
INVALID_CONFIG = "Invalid orbit configuration"

router = Router()


def pull_info(event: PullRequestEvent) -> PullInfo:
    """Return what training needs of the event's pull request."""
    pull = event.pull_request
    base_repo = pull.base.repo
    return PullInfo(
        number=pull.number,
        head_sha=pull.head.sha,
        head_repo=pull.head.repo.full_name if pull.head.repo else "",
        base_repo=base_repo.full_name if base_repo else "",
        base_ref=pull.base.ref,
        default_branch=(event.repository.default_branch if event.repository else None)
        or (base_repo.default_branch if base_repo else None)
        or "main",
        draft=bool(pull.draft),
        state=pull.state,
        head_ref=pull.head.ref or "",
    )


@router.on(PullRequestEvent, *TRAIN_ACTIONS)
async def on_pull_request(event: PullRequestEvent, ctx: Context) -> None:
    """Train a same-repository, non-draft PR whose changes touch the pipeline."""
    github: TrainingGitHub = ctx.github
    repo, pull = event.repo, pull_info(event)
    if (
        repo is None
        or not pull.head_sha
        or not pull.base_repo
        or pull.draft
        or pull.head_repo != pull.base_repo
    ):
        return  # forks are trained only after /retrain by a writer
    try:
        config = parse_config(await github.file_text(repo, CONFIG_PATH, pull.base_ref))
    except RepoConfigError as error:
        await _report_config_error(github, repo, pull, error)
        return
    if not touches_pipeline(await github.changed_files(repo, pull.number), config):
        return
    pushed = (
        await github.compare_files(repo, event.before, pull.head_sha)
        if event.action == "synchronize" and event.before
        else []
    )
    if records_outputs_only(pushed):
        await checks.carry_over(github, repo, event.before or "", pull.head_sha)
        return
    if await checks.is_training(github, repo, pull.head_sha):
        return  # a redelivery, or a second event for the same commit
    trigger = f"head:{pull.number}:{pull.head_sha}"
    await start_training(github, ctx.store, repo, pull, config.training.workflow, trigger)


async def _report_config_error(
    github: TrainingGitHub, repo: Repo, pull: PullInfo, error: RepoConfigError
) -> None:
    await checks.report_invalid_config(github, repo, pull.head_sha, error)


async def active_runs(
    github: Workflows, store: Store, repo: Repo, workflow: str, number: int
) -> list[tuple[RunInfo, TrainingRun]]:
    """Return the PR's training runs orbit started that have not finished, each with what it trains."""
    found = []
    for status in ACTIVE:
        for run in await github.workflow_runs(repo, workflow, status):
            record = await asyncio.to_thread(store.read, functools.partial(recorded, run_id=run.id))
            training = record.training if record is not None and record.purpose == TRAIN else None
            if training is not None and training.pull == number:
                found.append((run, training))
    return found


async def supersede(
    github: TrainingGitHub, store: Store, repo: Repo, number: int, workflow: str, new_sha: str
) -> list[int]:
    """Cancel the PR's active training runs and complete their check runs as superseded.

    A sweep's points are left to run beside a new training of the same commit, never beside a newer one.
    """
    cancelled = []
    for run, training in await active_runs(github, store, repo, workflow, number):
        if training.sweep and training.sha == new_sha:
            continue  # a sweep of this very commit runs beside its training; a newer commit stops it
        await github.cancel_run(repo, run.id)
        cancelled.append(run.id)
        if training.sweep:
            continue  # a sweep point has no check run of its own: the head's is its training's
        summary = f"Superseded by a newer training run at {new_sha[:7]}."
        update = CheckUpdate(conclusion="cancelled", title="Superseded", summary=summary)
        await checks.update_open(github, repo, training.sha, update)
    return cancelled


async def start_training(
    github: TrainingGitHub, store: Store, repo: Repo, pull: PullInfo, workflow: str, trigger: str
) -> RecordedRun:
    """Supersede older runs, queue the check run at the head and dispatch the trusted workflow.

    Safe to repeat: a trigger that already started a run starts nothing, and an open check run
    of the head (left by an attempt that died before it dispatched) is reused.
    """
    started = await asyncio.to_thread(
        store.read, functools.partial(by_trigger, repository=repo.full_name, trigger=trigger)
    )
    if started is not None:
        logs.bind(run_id=started.run_id)
        return started
    await supersede(github, store, repo, pull.number, workflow, pull.head_sha)
    if not await checks.is_training(github, repo, pull.head_sha):
        summary = f"Waiting for a GPU runner for PR #{pull.number}."
        await checks.queue(github, repo, pull.head_sha, "Training queued", summary)
    run = TrainingRun(pull.number, pull.head_sha, pull.base_ref or pull.default_branch)
    recorded = await dispatch(github, store, repo, TRAIN, workflow, pull.default_branch, run, trigger)
    logs.bind(run_id=recorded.run_id)
    return recorded


async def trainable(ctx: Context, call: CommandCall, command: str) -> tuple[PullInfo, str] | str:
    """Return the PR a command may train and its training workflow, or why it may not (the reply)."""
    github: TrainingGitHub = ctx.github
    pull = await github.pull_request(call.repo, call.pull)
    if pull.state != "open":
        return f"PR #{call.pull} is {pull.state}; nothing was trained."
    refusal = pinning.refusal(pull, call.args, command)
    if refusal is not None:
        return refusal
    try:
        config = parse_config(await github.file_text(call.repo, CONFIG_PATH, pull.base_ref))
    except RepoConfigError as error:
        await _report_config_error(github, call.repo, pull, error)
        return f"`{CONFIG_PATH}` is invalid, so nothing was trained: {error}"
    return pull, config.training.workflow


class Retrain:
    """The `/retrain [sha]` command: train the PR's head now; a fork's only as the writer names it.

    `/retrain key=values ...` is a sweep, served by `runner.sweeps` (which hands a plain `/retrain`
    here); should it reach this command, it trains nothing rather than ignore the settings.
    """

    async def __call__(self, ctx: Context, call: CommandCall) -> str:
        """Start training and say so."""
        if "=" in call.args:
            return "Parameter sweeps are not enabled on this installation; nothing was trained."
        found = await trainable(ctx, call, "retrain")
        if isinstance(found, str):
            return found
        pull, workflow = found
        await start_training(ctx.github, ctx.store, call.repo, pull, workflow, call.trigger)
        head = pull.head_sha[:7]
        return f"Training `{head}` on a GPU runner, as @{call.sender} asked; the report will follow."

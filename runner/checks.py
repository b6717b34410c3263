"""The `orbit/train` check run of a commit, from queued to completed: the one place that changes it.

A commit may carry several of them over time (a retrain, a superseded run); only the open ones
(not completed) are ever changed, so a late or repeated event cannot reopen a finished check.
"""

from typing import Protocol

from bot.events import Repo
from bot.gate_contract import TRAIN_CHECK, latest_own_check
from bot.github.checks import Annotation, CheckDetails, Checks, CheckUpdate
from bot.github.issues import Conversation
from bot.repo_config import CONFIG_PATH, RepoConfigError

CHECK_NAME = TRAIN_CHECK
INVALID_CONFIG = "Invalid orbit configuration"


async def open_checks(github: Checks, repo: Repo, sha: str) -> list[int]:
    """Return the ids of the commit's `orbit/train` check runs that have not completed."""
    return [
        check_id
        for check_id, status in await github.check_runs(repo, sha, CHECK_NAME)
        if status != "completed"
    ]


async def is_training(github: Checks, repo: Repo, sha: str) -> bool:
    """Return whether the commit has an open `orbit/train` check run (a training is on its way)."""
    return bool(await open_checks(github, repo, sha))


async def queue(github: Checks, repo: Repo, sha: str, title: str, summary: str) -> int:
    """Create a queued `orbit/train` check run at the commit and return its id."""
    return await github.create_check_run(repo, sha, CHECK_NAME, title, summary)


async def update_open(github: Checks, repo: Repo, sha: str, update: CheckUpdate) -> list[int]:
    """Apply `update` to every open `orbit/train` check run of the commit; return their ids."""
    changed = await open_checks(github, repo, sha)
    for check_id in changed:
        await github.update_check_run(repo, check_id, update)
    return changed


async def conclude_now(
    github: Checks,
    repo: Repo,
    sha: str,
    conclusion: str,
    title: str,
    summary: str,
    annotations: tuple[Annotation, ...] = (),
) -> int:
    """Create a check run at the commit that is already completed (an invalid configuration)."""
    check = await queue(github, repo, sha, title, summary)
    update = CheckUpdate(conclusion=conclusion, title=title, summary=summary, annotations=annotations)
    await github.update_check_run(repo, check, update)
    return check


def config_annotations(error: RepoConfigError) -> tuple[Annotation, ...]:
    """Return a failure annotation on `.github/orbit.yml` at each problem's line."""
    return tuple(
        Annotation(CONFIG_PATH, p.line, p.describe(CONFIG_PATH), title=INVALID_CONFIG) for p in error.problems
    )


def config_summary(error: RepoConfigError, where: str) -> str:
    """Return the Markdown that lists each problem of an invalid `.github/orbit.yml`, in a code block.

    The problems quote the file (a pull request's own, too): a block shows them as written.
    """
    problems = str(error).replace("`", "'")
    return f"### `{CONFIG_PATH}` {where} is invalid\n\n```text\n{problems}\n```"


async def report_invalid_config(github: Checks, repo: Repo, sha: str, error: RepoConfigError) -> int:
    """Fail a check run at the commit with each problem of `.github/orbit.yml` at its line."""
    summary = config_summary(error, "on the base branch")
    return await conclude_now(
        github, repo, sha, "failure", INVALID_CONFIG, summary, config_annotations(error)
    )


class CarryGitHub(Checks, CheckDetails, Conversation, Protocol):
    """Reading a commit's check runs with their App, and creating one."""


async def carry_over(github: CarryGitHub, repo: Repo, before: str, head: str) -> int | None:
    """Give a push that only records dvc.lock the verdict of the commit it was pushed on.

    Without it such a head has no check, and a repository with gates could not ship it (deploying
    fails closed). Only orbit's own completed check of `before` is carried, its conclusion and title
    as they are (a failed gate stays failed); a head that already has a check keeps its own.
    Returns the new check run's id, or None when there was nothing to carry or it was carried already.
    """
    own = (await github.own_login()).removesuffix("[bot]")
    if await github.check_runs(repo, head, CHECK_NAME):
        return None
    previous = latest_own_check(await github.check_run_details(repo, before, CHECK_NAME), own)
    if previous is None or previous.conclusion is None:
        return None
    title = previous.title or f"Training {previous.conclusion}"
    summary = (
        f"This push only records the training's outputs (`dvc.lock`), so it carries the verdict of "
        f"`{before[:7]}`: [its check run]({previous.html_url})."
    )
    return await conclude_now(github, repo, head, previous.conclusion, title, summary)

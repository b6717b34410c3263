"""When production may ship: the deploy policy of `.github/orbit.yml` and the gates of the training check.

A merge into the default branch ships production only with `deploy.production: on_merge` (read from
the default branch) and, where the repository has gates, only when the merged head's `orbit/train`
check run passed them: no check, a failed or cancelled run, an unreadable report all refuse. An
admin's `/deploy --force` on the merged PR ships it anyway, and the deployment says so. The check run
is read through `bot.gate_contract`: deploying never imports the training flow.
"""

from dataclasses import dataclass

from bot.events import Repo
from bot.gate_contract import TRAIN_CHECK, failed_gates, latest_own_check
from bot.repo_config import CONFIG_PATH, RepoConfig, RepoConfigError, parse_config
from deploy.github import DeployGitHub

FLAGS = ("--force",)
ADMIN = "admin"


class UnknownFlag(ValueError):
    """A `/deploy` flag orbit does not know."""


@dataclass(frozen=True)
class TrainingCheck:
    """What the training check of a commit says: the gates it failed, and where its report is."""

    failed: list[str]
    report_url: str = ""


def flags_of(args: str) -> tuple[set[str], str]:
    """Split `/deploy` arguments into its flags and the rest (a commit to pin); refuse an unknown flag."""
    words = args.split()
    flags = {word for word in words if word.startswith("-")}
    unknown = sorted(flags - set(FLAGS))
    if unknown:
        raise UnknownFlag(f"`/deploy` knows {', '.join(f'`{f}`' for f in FLAGS)}, not `{unknown[0]}`")
    return flags, " ".join(word for word in words if not word.startswith("-"))


async def training_check(github: DeployGitHub, repo: Repo, sha: str, gated: bool = False) -> TrainingCheck:
    """Return the gates the commit's latest `orbit/train` check run (orbit's own) failed, and its URL.

    `gated`: the repository has gates, so only a check that passed lets production ship: no check at
    the commit, or one that failed, was cancelled or could not read its report, counts as a failed gate
    (fail closed), never as none failed.
    """
    own = (await github.own_login()).removesuffix("[bot]")
    check = latest_own_check(await github.check_run_details(repo, sha, TRAIN_CHECK), own)
    if check is None:
        return TrainingCheck([f"no {TRAIN_CHECK} check at `{sha[:7]}`"] if gated else [])
    failed = failed_gates(check.title)
    if gated and not failed and check.conclusion != "success":
        failed = [f"{TRAIN_CHECK} {check.conclusion or 'unfinished'} at `{sha[:7]}`"]
    return TrainingCheck(failed, check.html_url)


def has_gates(config: RepoConfig) -> bool:
    """Return whether the repository gates what ships."""
    return bool(config.gates.thresholds or config.gates.no_significant_regression)


async def repo_config(github: DeployGitHub, repo: Repo, branch: str) -> RepoConfig:
    """Return the options on a branch (raises `RepoConfigError` when the file is invalid)."""
    return parse_config(await github.file_text(repo, CONFIG_PATH, branch))


def refused_by_gates(check: TrainingCheck, pull: int) -> str:
    """Return the reason a production deploy was refused, naming the failed gates and the override."""
    gates = "; ".join(f"`{gate}`" for gate in check.failed)
    return (
        f"Production was not deployed: PR #{pull}'s training did not pass its gates: {gates}. "
        f"An admin can comment `/deploy --force` on this pull request to deploy it anyway."
    )


def invalid_config(error: RepoConfigError) -> str:
    """Return the reason a production deploy was refused for an invalid `.github/orbit.yml`."""
    problems = str(error).replace("`", "'")
    why = f"Production was not deployed: `{CONFIG_PATH}` on the default branch is invalid."
    return f"{why}\n\n```\n{problems}\n```"


def forced_note(check: TrainingCheck, sender: str) -> str:
    """Return what a forced deploy's statuses say: the gate it went past and who forced it."""
    return f"forced past gate {'; '.join(check.failed)} by @{sender}"

"""`/apply <experiment>`: commit a sweep point's values to the PR's params.yaml, as the App.

Only a point orbit ran for this PR, only on a branch of this repository (a fork's branch is the
fork's), and only through the Git Data API on top of the head the writer saw: a branch that moved
meanwhile refuses the fast-forward and nothing is lost. The edit keeps the rest of params.yaml as
written. Safe to repeat: a head that already holds the values gets no commit. The push then trains
as any push does.
"""

import asyncio
import functools
import re
from typing import Protocol

from bot.context import CommandCall, Context
from bot.events import Repo
from bot.github import WRITE_PERMISSIONS, PullInfo, TreeEntry, Unprocessable
from bot.github.git import GitData
from bot.github.pulls import Pulls
from runner.report import inert
from runner.sweeps.params_edit import ParamsEditError, current_values, set_values
from runner.sweeps.state import SweepPoint, by_experiment

PARAMS = "params.yaml"
FILE_MODES = ("100644", "100755")
EXPERIMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
USAGE = "`/apply <experiment>` names a point of a sweep of this PR, e.g. `/apply sweep-1234-0`"


class ApplyGitHub(Pulls, GitData, Protocol):
    """Committing a file to a pull request's branch."""


async def commit_file(
    github: ApplyGitHub, repo: Repo, pull: PullInfo, path: str, content: bytes, message: str
) -> str:
    """Commit one top-level file on top of the PR's head and move its branch there (fast-forward only)."""
    root = await github.commit_tree(repo, pull.head_sha)
    entry = next((e for e in await github.tree_entries(repo, root) if e.path == path), None)
    if entry is None or entry.type != "blob" or entry.mode not in FILE_MODES:
        raise ParamsEditError(f"{path} is not a plain file at the head")
    blob = await github.create_blob(repo, content)
    tree = await github.create_tree(repo, [TreeEntry(path, entry.mode, "blob", blob)], root)
    commit = await github.create_commit(repo, message, tree, [pull.head_sha])
    await github.move_branch(repo, pull.head_ref, commit)
    return commit


def _message(point: SweepPoint, sender: str) -> str:
    settings = "\n".join(f"- {word}" for word in point.params)
    return f"Apply sweep point {point.experiment} to {PARAMS}\n\n{settings}\n\nAsked by {sender} with /apply."


async def _find(ctx: Context, call: CommandCall, name: str) -> SweepPoint | None:
    lookup = functools.partial(by_experiment, repository=call.repo.full_name, pull=call.pull, experiment=name)
    return await asyncio.to_thread(ctx.store.read, lookup)


class Apply:
    """The `/apply <experiment>` command."""

    async def __call__(self, ctx: Context, call: CommandCall) -> str:
        """Commit the point's values to the PR's branch, or say why not."""
        words = call.args.split()
        name = words[0] if words else ""
        if len(words) != 1 or not EXPERIMENT.fullmatch(name):
            return f"{USAGE}; nothing was committed."
        if call.permission not in WRITE_PERMISSIONS:
            return f"@{call.sender}: `/apply` needs write access; nothing was committed."
        github: ApplyGitHub = ctx.github
        pull = await github.pull_request(call.repo, call.pull)
        if pull.state != "open":
            return f"PR #{call.pull} is {pull.state}; nothing was committed."
        if pull.head_repo != pull.base_repo or not pull.head_ref:
            return (
                f"PR #{call.pull} comes from a fork: orbit commits only to this repository's branches; "
                "nothing was committed."
            )
        point = await _find(ctx, call, name)
        if point is None:
            return f"No sweep of PR #{call.pull} ran `{name}`; nothing was committed."
        return await self._commit(github, call, pull, point)

    async def _commit(self, github: ApplyGitHub, call: CommandCall, pull: PullInfo, point: SweepPoint) -> str:
        text = await github.file_text(call.repo, PARAMS, pull.head_sha)
        if text is None:
            return f"`{pull.head_sha[:7]}` has no {PARAMS}; nothing was committed."
        shown = ", ".join(f"`{word}`" for word in point.params)
        try:
            if current_values(text, point.settings):
                return f"{PARAMS} at `{pull.head_sha[:7]}` already has {shown}; nothing was committed."
            if point.sha != pull.head_sha:
                return (
                    f"`{point.experiment}` was trained on `{point.sha[:7]}` and the head is now "
                    f"`{pull.head_sha[:7]}`: its values were never trained with this code. Sweep the new "
                    "head; nothing was committed."
                )
            edited = set_values(text, point.settings)
            commit = await commit_file(
                github, call.repo, pull, PARAMS, edited.encode(), _message(point, call.sender)
            )
        except ParamsEditError as error:
            return f"{error}; nothing was committed."
        except Unprocessable:
            branch = inert.code(pull.head_ref)
            again = f"`/apply {point.experiment}`"
            return f"{branch} moved while committing; nothing was committed. Comment {again} again."
        return (
            f"Committed `{commit[:7]}` to {inert.code(pull.head_ref)}: {PARAMS} with {shown} "
            f"from `{point.experiment}`. "
            "Its training starts with the push."
        )

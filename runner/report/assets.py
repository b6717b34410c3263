"""Publish a report's images inside the repository: an orphan branch written through the Git Data API.

Layout: `pr-<N>/run-<id>/<image>`; each PR keeps its newest runs. Links pin the commit, so a folded
older report still shows its plots after its folder is pruned from the branch's tip. The branch only
moves forward (never forced): a concurrent publisher's commit makes the move fail, and the whole
write is redone on top of it.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from bot.errors import TemporaryError
from bot.events import Repo
from bot.github import TreeEntry, Unprocessable
from runner.github import ReportGitHub

BRANCH = "orbit-assets"
KEEP_RUNS = 5
ATTEMPTS = 4
FILE, FOLDER = "100644", "040000"
README = b"""# orbit-assets

Plots of orbit's training reports, one folder per pull request and run, linked from the PR comments.
orbit writes this branch; it has no history in common with the code, and older runs are pruned.
"""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    """Where the images went: the commit and each image's URL."""

    commit: str
    urls: dict[str, str]


def run_number(entry: TreeEntry) -> int:
    """Return the run id of a `run-<id>` folder, or -1 for anything else."""
    prefix, _, number = entry.path.partition("-")
    return int(number) if prefix == "run" and number.isdigit() else -1


async def _pr_folder(
    github: ReportGitHub, repo: Repo, root: str | None, folder: str, run_folder: TreeEntry
) -> str:
    """Return a new tree for the PR's folder: this run plus its newest earlier runs."""
    runs: list[TreeEntry] = []
    if root is not None:
        entry = next((e for e in await github.tree_entries(repo, root) if e.path == folder), None)
        if entry is not None and entry.type == "tree":
            runs = [e for e in await github.tree_entries(repo, entry.sha) if run_number(e) >= 0]
    earlier = sorted((e for e in runs if e.path != run_folder.path), key=run_number, reverse=True)
    return await github.create_tree(repo, [run_folder, *earlier[: KEEP_RUNS - 1]], None)


async def _write(github: ReportGitHub, repo: Repo, folder: str, run_folder: TreeEntry, message: str) -> str:
    head = await github.branch_head(repo, BRANCH)
    root = await github.commit_tree(repo, head) if head else None
    pr_tree = await _pr_folder(github, repo, root, folder, run_folder)
    entries = [TreeEntry(folder, FOLDER, "tree", pr_tree)]
    if root is None:
        entries.append(TreeEntry("README.md", FILE, "blob", await github.create_blob(repo, README)))
    tree = await github.create_tree(repo, entries, root)
    commit = await github.create_commit(repo, message, tree, [head] if head else [])
    if head:
        await github.move_branch(repo, BRANCH, commit)
    else:
        await github.create_branch(repo, BRANCH, commit)
    return commit


async def publish_images(
    github: ReportGitHub, repo: Repo, html_url: str, pull: int, run_id: int, images: Mapping[str, bytes]
) -> Published:
    """Commit the images under `pr-<pull>/run-<run_id>/` on the assets branch; return their URLs."""
    blobs = [
        TreeEntry(name, FILE, "blob", await github.create_blob(repo, data)) for name, data in images.items()
    ]
    run_folder = TreeEntry(f"run-{run_id}", FOLDER, "tree", await github.create_tree(repo, blobs, None))
    folder, message = f"pr-{pull}", f"Plots of PR #{pull}, run {run_id}"
    for attempt in range(1, ATTEMPTS + 1):
        try:
            commit = await _write(github, repo, folder, run_folder, message)
        except Unprocessable:  # the branch moved (or appeared) under us: redo on top of it
            log.info("%s moved while publishing run %s (attempt %s)", BRANCH, run_id, attempt)
            continue
        base = f"{html_url}/blob/{commit}/{folder}/{run_folder.path}"
        return Published(commit, {name: f"{base}/{name}?raw=true" for name in images})
    raise TemporaryError(f"{BRANCH} kept moving while publishing run {run_id}")

"""The Git Data API: refs, commits, trees and blobs (orbit commits report images with it)."""

import base64
from dataclasses import dataclass
from typing import Any, Protocol

from githubkit import GitHub

from bot.events import Repo
from bot.github.calls import NotFound, body_of, call


@dataclass(frozen=True)
class TreeEntry:
    """An entry of a Git tree: a blob (file) or a tree (folder)."""

    path: str
    mode: str
    type: str
    sha: str


class GitData(Protocol):
    """Read and write a repository's objects and branches."""

    async def branch_head(self, repo: Repo, branch: str) -> str | None:
        """Return the commit a branch points at, or None when there is no such branch."""
        ...

    async def commit_tree(self, repo: Repo, commit_sha: str) -> str:
        """Return the root tree of a commit."""
        ...

    async def tree_entries(self, repo: Repo, tree_sha: str) -> list[TreeEntry]:
        """Return the entries of one tree (not recursive)."""
        ...

    async def create_blob(self, repo: Repo, content: bytes) -> str:
        """Store a file's bytes and return the blob's SHA."""
        ...

    async def create_tree(self, repo: Repo, entries: list[TreeEntry], base_tree: str | None) -> str:
        """Create a tree of the entries (on top of `base_tree` when given) and return its SHA."""
        ...

    async def create_commit(self, repo: Repo, message: str, tree_sha: str, parents: list[str]) -> str:
        """Create a commit and return its SHA."""
        ...

    async def create_branch(self, repo: Repo, branch: str, commit_sha: str) -> None:
        """Create a branch at a commit; Unprocessable when it already exists."""
        ...

    async def move_branch(self, repo: Repo, branch: str, commit_sha: str) -> None:
        """Fast-forward a branch to a commit; Unprocessable when someone moved it meanwhile."""
        ...


class GitDataMixin:
    """`GitData` over githubkit."""

    _github: GitHub[Any]
    _rest: Any

    async def branch_head(self, repo: Repo, branch: str) -> str | None:
        """Return the commit a branch points at, or None when there is no such branch."""
        try:
            response = await call(
                "get_ref", lambda: self._rest.git.async_get_ref(repo.owner, repo.name, f"heads/{branch}")
            )
        except NotFound:
            return None
        return str(body_of(response)["object"]["sha"])

    async def commit_tree(self, repo: Repo, commit_sha: str) -> str:
        """Return the root tree of a commit."""
        response = await call(
            "get_commit", lambda: self._rest.git.async_get_commit(repo.owner, repo.name, commit_sha)
        )
        return str(body_of(response)["tree"]["sha"])

    async def tree_entries(self, repo: Repo, tree_sha: str) -> list[TreeEntry]:
        """Return the entries of one tree."""
        response = await call(
            "get_tree", lambda: self._rest.git.async_get_tree(repo.owner, repo.name, tree_sha)
        )
        return [
            TreeEntry(str(e["path"]), str(e["mode"]), str(e["type"]), str(e["sha"]))
            for e in body_of(response).get("tree") or []
        ]

    async def create_blob(self, repo: Repo, content: bytes) -> str:
        """Store a file's bytes and return the blob's SHA."""
        encoded = base64.b64encode(content).decode()
        response = await call(
            "create_blob",
            lambda: self._rest.git.async_create_blob(
                repo.owner, repo.name, content=encoded, encoding="base64"
            ),
        )
        return str(body_of(response)["sha"])

    async def create_tree(self, repo: Repo, entries: list[TreeEntry], base_tree: str | None) -> str:
        """Create a tree and return its SHA."""
        tree = [{"path": e.path, "mode": e.mode, "type": e.type, "sha": e.sha} for e in entries]
        extra = {"base_tree": base_tree} if base_tree else {}
        response = await call(
            "create_tree",
            lambda: self._rest.git.async_create_tree(repo.owner, repo.name, tree=tree, **extra),
        )
        return str(body_of(response)["sha"])

    async def create_commit(self, repo: Repo, message: str, tree_sha: str, parents: list[str]) -> str:
        """Create a commit and return its SHA."""
        response = await call(
            "create_commit",
            lambda: self._rest.git.async_create_commit(
                repo.owner, repo.name, message=message, tree=tree_sha, parents=parents
            ),
        )
        return str(body_of(response)["sha"])

    async def create_branch(self, repo: Repo, branch: str, commit_sha: str) -> None:
        """Create a branch at a commit."""
        await call(
            "create_ref",
            lambda: self._rest.git.async_create_ref(
                repo.owner, repo.name, ref=f"refs/heads/{branch}", sha=commit_sha
            ),
        )

    async def move_branch(self, repo: Repo, branch: str, commit_sha: str) -> None:
        """Fast-forward a branch (never forced: a concurrent writer's commit is not lost)."""
        await call(
            "update_ref",
            lambda: self._rest.git.async_update_ref(
                repo.owner, repo.name, f"heads/{branch}", sha=commit_sha, force=False
            ),
        )

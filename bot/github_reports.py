"""The GitHub calls that publishing a report needs: artifacts, job logs, comments and the Git Data API."""

import base64
from dataclasses import dataclass
from typing import Any, Protocol

from githubkit import GitHub

from bot.github_calls import NotFound, body_of, call
from bot.payloads import Repo


@dataclass(frozen=True)
class StepInfo:
    """A step of a workflow job."""

    number: int
    name: str
    conclusion: str


@dataclass(frozen=True)
class ArtifactInfo:
    """An artifact of a workflow run."""

    id: int
    name: str
    expired: bool
    size: int


@dataclass(frozen=True)
class CommentInfo:
    """A comment on an issue or pull request."""

    id: int
    body: str
    author_is_bot: bool


@dataclass(frozen=True)
class TreeEntry:
    """An entry of a Git tree: a blob (file) or a tree (folder)."""

    path: str
    mode: str
    type: str
    sha: str


class ReportsApi(Protocol):
    """What publishing a training report asks of GitHub."""

    async def run_artifacts(self, repo: Repo, run_id: int) -> list[ArtifactInfo]:
        """Return the artifacts of a workflow run."""
        ...

    async def download_artifact(self, repo: Repo, artifact_id: int) -> bytes:
        """Return an artifact's zip archive."""
        ...

    async def job_log(self, repo: Repo, job_id: int) -> str:
        """Return a workflow job's log as text."""
        ...

    async def issue_comments(self, repo: Repo, number: int) -> list[CommentInfo]:
        """Return every comment of an issue or pull request, oldest first."""
        ...

    async def update_comment(self, repo: Repo, comment_id: int, body: str) -> None:
        """Replace a comment's body."""
        ...

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


async def named_artifact(github: ReportsApi, repo: Repo, run_id: int, name: str) -> bytes | None:
    """Return the zip of the run's unexpired artifact of that name, or None when there is none."""
    found = [a for a in await github.run_artifacts(repo, run_id) if a.name == name and not a.expired]
    return await github.download_artifact(repo, found[0].id) if found else None


class ReportsMixin:
    """`ReportsApi` over githubkit, for `InstallationClient`."""

    _github: GitHub[Any]
    _rest: Any

    async def run_artifacts(self, repo: Repo, run_id: int) -> list[ArtifactInfo]:
        """Return the artifacts of a workflow run."""
        response = await call(
            "list_run_artifacts",
            lambda: self._rest.actions.async_list_workflow_run_artifacts(
                repo.owner, repo.name, run_id, per_page=100
            ),
        )
        return [
            ArtifactInfo(
                int(item["id"]),
                str(item.get("name", "")),
                bool(item.get("expired")),
                int(item.get("size_in_bytes") or 0),
            )
            for item in body_of(response).get("artifacts") or []
        ]

    async def download_artifact(self, repo: Repo, artifact_id: int) -> bytes:
        """Return an artifact's zip (GitHub redirects to storage; the token is not sent there)."""
        response = await call(
            "download_artifact",
            lambda: self._rest.actions.async_download_artifact(repo.owner, repo.name, artifact_id, "zip"),
        )
        return bytes(response.content)

    async def job_log(self, repo: Repo, job_id: int) -> str:
        """Return a workflow job's log as text."""
        response = await call(
            "download_job_log",
            lambda: self._rest.actions.async_download_job_logs_for_workflow_run(
                repo.owner, repo.name, job_id
            ),
        )
        return str(response.text)

    async def issue_comments(self, repo: Repo, number: int) -> list[CommentInfo]:
        """Return every comment of an issue or pull request, following every page."""

        async def collect() -> list[CommentInfo]:
            pages = self._rest.paginate(
                self._rest.issues.async_list_comments,
                owner=repo.owner,
                repo=repo.name,
                issue_number=number,
                per_page=100,
                map_func=body_of,
            )
            return [
                CommentInfo(
                    int(item["id"]),
                    str(item.get("body") or ""),
                    (item.get("user") or {}).get("type") == "Bot",
                )
                async for item in pages
            ]

        return await call("list_comments", collect)

    async def update_comment(self, repo: Repo, comment_id: int, body: str) -> None:
        """Replace a comment's body."""
        await call(
            "update_comment",
            lambda: self._rest.issues.async_update_comment(repo.owner, repo.name, comment_id, body=body),
        )

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

"""Pull requests: their head and base, the files they change, a file at a ref."""

from dataclasses import dataclass
from typing import Any, Protocol

from githubkit import GitHub

from bot.events import Repo
from bot.github.calls import NotFound, body_of, call


@dataclass(frozen=True)
class PullInfo:
    """A pull request's head, base and state."""

    number: int
    head_sha: str
    head_repo: str
    base_repo: str
    base_ref: str
    default_branch: str
    draft: bool
    state: str
    head_ref: str = ""  # the head's branch name (in `head_repo`)


class Pulls(Protocol):
    """What flows read of pull requests and their files."""

    async def pull_request(self, repo: Repo, number: int) -> "PullInfo":
        """Return what training and deploying need of a pull request."""
        ...

    async def changed_files(self, repo: Repo, number: int) -> list[str]:
        """Return the paths a pull request changes (every page)."""
        ...

    async def compare_files(self, repo: Repo, base: str, head: str) -> list[str]:
        """Return the paths changed between two commits."""
        ...

    async def file_text(self, repo: Repo, path: str, ref: str) -> str | None:
        """Return a file's text at a ref, or None when it does not exist."""
        ...


class PullsMixin:
    """`Pulls` over githubkit."""

    _github: GitHub[Any]
    _rest: Any

    async def pull_request(self, repo: Repo, number: int) -> PullInfo:
        """Return a pull request's head, base and state."""
        response = await call("get_pull", lambda: self._rest.pulls.async_get(repo.owner, repo.name, number))
        data = body_of(response)
        return PullInfo(
            number=number,
            head_sha=str(data["head"]["sha"]),
            head_repo=str((data["head"].get("repo") or {}).get("full_name", "")),
            base_repo=str(data["base"]["repo"]["full_name"]),
            base_ref=str(data["base"]["ref"]),
            default_branch=str(data["base"]["repo"].get("default_branch", data["base"]["ref"])),
            draft=bool(data.get("draft", False)),
            state=str(data.get("state", "open")),
            head_ref=str(data["head"].get("ref") or ""),
        )

    async def changed_files(self, repo: Repo, number: int) -> list[str]:
        """Return the paths a pull request changes, following every page."""

        async def collect() -> list[str]:
            pages = self._rest.paginate(
                self._rest.pulls.async_list_files,
                owner=repo.owner,
                repo=repo.name,
                pull_number=number,
                per_page=100,
                map_func=body_of,
            )
            return [str(item["filename"]) async for item in pages]

        return await call("list_pull_files", collect)

    async def compare_files(self, repo: Repo, base: str, head: str) -> list[str]:
        """Return the paths changed between two commits."""
        response = await call(
            "compare",
            lambda: self._rest.repos.async_compare_commits(repo.owner, repo.name, f"{base}...{head}"),
        )
        return [str(item["filename"]) for item in body_of(response).get("files") or []]

    async def file_text(self, repo: Repo, path: str, ref: str) -> str | None:
        """Return a file's text at a ref, or None when it does not exist."""
        try:
            response = await call(
                "get_content",
                lambda: self._rest.repos.async_get_content(
                    repo.owner,
                    repo.name,
                    path,
                    ref=ref,
                    headers={"Accept": "application/vnd.github.raw+json"},
                ),
            )
        except NotFound:
            return None
        return str(response.text)

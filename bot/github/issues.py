"""Conversation on issues and pull requests: permissions, reactions, comments."""

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from githubkit import GitHub

from bot.events import Repo
from bot.github.calls import body_of, call

WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
Reaction = Literal["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]


@dataclass(frozen=True)
class CommentInfo:
    """A comment on an issue or pull request."""

    id: int
    body: str
    author: str


@dataclass(frozen=True)
class ReactionInfo:
    """A reaction to a comment: its content (`eyes`, `rocket`, ...) and who reacted."""

    content: str
    author: str


class Conversation(Protocol):
    """Who may act on a repository, and the comments and reactions of its pull requests."""

    async def own_login(self) -> str:
        """Return the login the App comments as (`<slug>[bot]`)."""
        ...

    async def collaborator_permission(self, repo: Repo, username: str) -> str:
        """Return the user's permission on the repository: admin, maintain, write, triage, read or none."""
        ...

    async def add_reaction(self, repo: Repo, comment_id: int, content: Reaction) -> None:
        """React to an issue or pull request comment."""
        ...

    async def comment_reactions(self, repo: Repo, comment_id: int) -> list[ReactionInfo]:
        """Return every reaction to an issue or pull request comment."""
        ...

    async def create_comment(self, repo: Repo, number: int, body: str) -> int:
        """Comment on an issue or pull request and return the comment's id."""
        ...

    async def issue_comments(self, repo: Repo, number: int) -> list[CommentInfo]:
        """Return every comment of an issue or pull request, oldest first."""
        ...

    async def update_comment(self, repo: Repo, comment_id: int, body: str) -> None:
        """Replace a comment's body."""
        ...


class AppIdentity:
    """The App's own login, asked of GitHub once (`GET /app`, as the App) and kept."""

    def __init__(self, github: GitHub[Any]) -> None:
        self._github = github
        self._login: str | None = None

    async def login(self) -> str:
        """Return `<slug>[bot]`, the author of every comment the App writes."""
        if self._login is None:
            response = await call("get_app", self._github.rest.apps.async_get_authenticated)
            self._login = f"{body_of(response)['slug']}[bot]"
        return self._login


class ConversationMixin:
    """`Conversation` over githubkit."""

    _github: GitHub[Any]
    _rest: Any
    _identity: AppIdentity

    async def own_login(self) -> str:
        """Return the login the App comments as."""
        return await self._identity.login()

    async def collaborator_permission(self, repo: Repo, username: str) -> str:
        """Return the user's permission on the repository."""
        response = await call(
            "get_collaborator_permission",
            lambda: self._rest.repos.async_get_collaborator_permission_level(repo.owner, repo.name, username),
        )
        return str(body_of(response).get("permission", "none"))

    async def add_reaction(self, repo: Repo, comment_id: int, content: Reaction) -> None:
        """React to a comment."""
        await call(
            "create_reaction",
            lambda: self._rest.reactions.async_create_for_issue_comment(
                repo.owner,
                repo.name,
                comment_id,
                content=content,
            ),
        )

    async def comment_reactions(self, repo: Repo, comment_id: int) -> list[ReactionInfo]:
        """Return every reaction to a comment, following every page."""

        async def collect() -> list[ReactionInfo]:
            pages = self._rest.paginate(
                self._rest.reactions.async_list_for_issue_comment,
                owner=repo.owner,
                repo=repo.name,
                comment_id=comment_id,
                per_page=100,
                map_func=body_of,
            )
            return [
                ReactionInfo(str(item.get("content") or ""), str((item.get("user") or {}).get("login", "")))
                async for item in pages
            ]

        return await call("list_reactions", collect)

    async def create_comment(self, repo: Repo, number: int, body: str) -> int:
        """Comment on an issue or pull request."""
        response = await call(
            "create_comment",
            lambda: self._rest.issues.async_create_comment(repo.owner, repo.name, number, body=body),
        )
        return int(body_of(response)["id"])

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
                    str((item.get("user") or {}).get("login", "")),
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

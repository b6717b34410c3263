"""Hand-written fakes that record calls, and helpers to build signed deliveries."""

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from bot.delivery import Delivery, signature_of
from bot.errors import TemporaryError
from bot.github import GitHubApi, Reaction
from bot.payloads import Repo

SECRET = b"it's a secret to everybody"


@dataclass
class FakeGitHub:
    """Records every call; permissions per user; can fail the next calls."""

    permissions: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def _record(self, name: str, *args: Any) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.calls.append((name, args))

    async def collaborator_permission(self, repo: Repo, username: str) -> str:
        self._record("permission", repo.full_name, username)
        return self.permissions.get(username, "read")

    async def add_reaction(self, repo: Repo, comment_id: int, content: Reaction) -> None:
        self._record("reaction", repo.full_name, comment_id, content)

    async def create_comment(self, repo: Repo, number: int, body: str) -> int:
        self._record("comment", repo.full_name, number, body)
        return len(self.calls)

    async def changed_files(self, repo: Repo, number: int) -> list[str]:
        self._record("files", repo.full_name, number)
        return self.files

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for call, args in self.calls if call == name]


@dataclass
class FakeApp:
    """A `GitHubApp` handing out one fake per installation."""

    github: FakeGitHub = field(default_factory=FakeGitHub)
    installations: list[int] = field(default_factory=list)

    def for_installation(self, installation_id: int) -> GitHubApi:
        self.installations.append(installation_id)
        return self.github


def flaky(times: int) -> list[Exception]:
    return [TemporaryError("GitHub answered 502") for _ in range(times)]


def comment_payload(
    body: str, number: int = 7, user: str = "octocat", user_type: str = "User"
) -> dict[str, Any]:
    return {
        "action": "created",
        "issue": {"number": number, "pull_request": {"url": "https://api.github.com/repos/o/r/pulls/7"}},
        "comment": {"id": 1000 + number, "body": body, "user": {"login": user, "type": user_type}},
        "repository": {"full_name": "octo-org/model", "name": "model", "owner": {"login": "octo-org"}},
        "installation": {"id": 42},
    }


def delivery(event: str, payload: dict[str, Any], delivery_id: str | None = None) -> Delivery:
    return Delivery(event, delivery_id or str(uuid.uuid4()), payload)


def signed_headers(
    event: str, body: bytes, delivery_id: str | None = None, secret: bytes = SECRET
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery_id or str(uuid.uuid4()),
        "x-hub-signature-256": signature_of(secret, body),
    }


def body_of(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload)

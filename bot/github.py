"""The GitHub calls handlers make, behind a Protocol, and their real implementation on githubkit.

Installation tokens are minted from the App's JWT and cached per installation by githubkit
until a minute before they expire. Failures are translated once, here, into temporary (retry)
or permanent errors.
"""

from collections.abc import Awaitable, Callable
from typing import Literal, Protocol, TypeVar

import httpx
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RateLimitExceeded, RequestError, RequestFailed

from bot.errors import PermanentError, TemporaryError
from bot.metrics import GITHUB_CALLS
from bot.payloads import Repo

T = TypeVar("T")
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
Reaction = Literal["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]


class GitHubApi(Protocol):
    """What handlers ask of GitHub, for one installation."""

    async def collaborator_permission(self, repo: Repo, username: str) -> str:
        """Return the user's permission on the repository: admin, maintain, write, triage, read or none."""
        ...

    async def add_reaction(self, repo: Repo, comment_id: int, content: Reaction) -> None:
        """React to an issue or pull request comment."""
        ...

    async def create_comment(self, repo: Repo, number: int, body: str) -> int:
        """Comment on an issue or pull request and return the comment's id."""
        ...

    async def changed_files(self, repo: Repo, number: int) -> list[str]:
        """Return the paths a pull request changes (every page)."""
        ...


class GitHubApp(Protocol):
    """The App: hands out a client acting as one of its installations."""

    def for_installation(self, installation_id: int) -> GitHubApi:
        """Return a client authenticated as the installation."""
        ...


async def call(name: str, request: Callable[[], Awaitable[T]]) -> T:
    """Run one API call, count it by outcome, and translate its failure."""
    try:
        result = await request()
    except RateLimitExceeded as error:
        GITHUB_CALLS.labels(name, str(error.response.status_code)).inc()
        raise TemporaryError(f"GitHub rate limit on {name}", error.retry_after.total_seconds()) from error
    except RequestFailed as error:
        status = error.response.status_code
        GITHUB_CALLS.labels(name, str(status)).inc()
        if status >= 500 or status == 429:
            raise TemporaryError(f"GitHub answered {status} to {name}", _retry_after(error)) from error
        raise PermanentError(f"GitHub answered {status} to {name}") from error
    except (RequestError, httpx.TransportError) as error:
        GITHUB_CALLS.labels(name, "network").inc()
        raise TemporaryError(f"network error calling GitHub ({name}): {type(error).__name__}") from error
    GITHUB_CALLS.labels(name, "ok").inc()
    return result


def _retry_after(error: RequestFailed) -> float | None:
    value = error.response.headers.get("retry-after")
    return float(value) if value and value.isdigit() else None


class InstallationClient:
    """`GitHubApi` over githubkit, as one installation."""

    def __init__(self, github: GitHub[AppAuthStrategy], installation_id: int) -> None:
        self._github = github.with_auth(github.auth.as_installation(installation_id))

    async def collaborator_permission(self, repo: Repo, username: str) -> str:
        """Return the user's permission on the repository."""
        response = await call(
            "get_collaborator_permission",
            lambda: self._github.rest.repos.async_get_collaborator_permission_level(
                repo.owner, repo.name, username
            ),
        )
        return str(response.json().get("permission", "none"))

    async def add_reaction(self, repo: Repo, comment_id: int, content: Reaction) -> None:
        """React to a comment."""
        await call(
            "create_reaction",
            lambda: self._github.rest.reactions.async_create_for_issue_comment(
                repo.owner,
                repo.name,
                comment_id,
                content=content,
            ),
        )

    async def create_comment(self, repo: Repo, number: int, body: str) -> int:
        """Comment on an issue or pull request."""
        response = await call(
            "create_comment",
            lambda: self._github.rest.issues.async_create_comment(repo.owner, repo.name, number, body=body),
        )
        return int(response.json()["id"])

    async def changed_files(self, repo: Repo, number: int) -> list[str]:
        """Return the paths a pull request changes, following every page."""

        async def collect() -> list[str]:
            pages = self._github.rest.paginate(
                self._github.rest.pulls.async_list_files,
                owner=repo.owner,
                repo=repo.name,
                pull_number=number,
                per_page=100,
                map_func=lambda response: response.json(),
            )
            return [str(item["filename"]) async for item in pages]

        return await call("list_pull_files", collect)


class GitHubAppClient:
    """`GitHubApp` over githubkit; one instance shares the token cache of every installation."""

    def __init__(self, app_id: int, private_key: str, api_url: str) -> None:
        self._github = GitHub(
            AppAuthStrategy(str(app_id), private_key),
            base_url=api_url,
            auto_retry=False,  # retries belong to the inbox, which knows the attempt count
            cache_strategy=MemCacheStrategy(),  # tokens cached per client, not per process
        )

    def for_installation(self, installation_id: int) -> GitHubApi:
        """Return a client acting as the installation."""
        return InstallationClient(self._github, installation_id)

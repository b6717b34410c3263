"""The App's GitHub client on githubkit: one installation's calls, every area together.

Installation tokens are minted from the App's JWT and cached per installation by githubkit
until a minute before they expire. Failures are translated once, in `calls`, into temporary
(retry) or permanent errors. Each flow asks for the few areas it uses (see its own `github`
module); `GitHubApi` is all of them, what the workers hand to handlers.
"""

from typing import Protocol

import httpx
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy

from bot.github.actions import ActionsMixin, Artifacts, Jobs, Workflows
from bot.github.checks import CheckDetails, Checks, ChecksMixin
from bot.github.deployments import Deployments, DeploymentsMixin, Merges
from bot.github.direct import Authorizations, DirectCalls, Endpoint
from bot.github.git import GitData, GitDataMixin
from bot.github.issues import AppIdentity, Conversation, ConversationMixin
from bot.github.pulls import Pulls, PullsMixin
from bot.github.runners import RunnersMixin, SelfHostedRunners
from bot.github.transport import AiohttpTransport


class GitHubApi(
    Conversation,
    Pulls,
    Checks,
    CheckDetails,
    Workflows,
    Jobs,
    Artifacts,
    SelfHostedRunners,
    GitData,
    Deployments,
    Merges,
    Protocol,
):
    """Every area of GitHub orbit calls, for one installation."""


class GitHubApp(Protocol):
    """The App: hands out a client acting as one of its installations."""

    def for_installation(self, installation_id: int) -> GitHubApi:
        """Return a client authenticated as the installation."""
        ...


class InstallationClient(
    ConversationMixin, PullsMixin, ChecksMixin, ActionsMixin, RunnersMixin, GitDataMixin, DeploymentsMixin
):
    """`GitHubApi` over githubkit, as one installation."""

    def __init__(
        self,
        github: GitHub[AppAuthStrategy],
        installation_id: int,
        identity: AppIdentity,
        endpoint: Endpoint,
    ) -> None:
        self._github = github.with_auth(github.auth.as_installation(installation_id))
        self._rest = self._github.rest
        self._direct = DirectCalls(self._github, installation_id, endpoint)
        self._identity = identity


# The REST areas orbit calls. githubkit imports an area's module on its first use, a few milliseconds
# each, which would fall on the first event's handling: they are imported at start-up instead.
REST_AREAS = ("actions", "apps", "checks", "git", "issues", "pulls", "reactions", "repos")

# Every call to GitHub (and to the storage its downloads redirect to) gives up when connecting, or
# waiting for the next bytes of an answer, takes longer than this: a worker is never held forever.
GITHUB_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=30.0, pool=30.0)


class SharedTransport(AiohttpTransport):
    """The transport every GitHub client of the process shares: connections reused, timeouts on all.

    githubkit opens an `httpx.AsyncClient` per request and closes it after; closing a client closes
    its transport, which would drop the connections of every other request in flight: this one stays
    open. No retries here: they belong to the inbox, which knows the attempt count.
    """

    def __init__(self, timeout: httpx.Timeout = GITHUB_TIMEOUT, retries: int = 0) -> None:
        if retries:
            raise ValueError("GitHub calls are retried by the inbox, never by the transport")
        super().__init__(timeout)


class GitHubAppClient:
    """`GitHubApp` over githubkit; one instance shares the token cache of every installation."""

    def __init__(
        self, app_id: int, private_key: str, api_url: str, timeout: httpx.Timeout = GITHUB_TIMEOUT
    ) -> None:
        self._github = GitHub(
            AppAuthStrategy(str(app_id), private_key),
            base_url=api_url,
            timeout=timeout,  # githubkit's default is none at all
            auto_retry=False,  # retries belong to the inbox, which knows the attempt count
            cache_strategy=MemCacheStrategy(),  # tokens cached per client, not per process
            http_cache=False,  # handlers need fresh state (is the job still queued?), not cached pages
            # One shared transport: connections are reused, and no TLS context is built per request.
            async_transport=SharedTransport(timeout, retries=0),
        )
        self._identity = AppIdentity(self._github)
        self._authorizations = Authorizations()
        self._endpoint = Endpoint.of(self._github, self._authorizations)

    async def warm(self) -> None:
        """Import the REST areas orbit calls now, not on the first event that calls each."""
        for area in REST_AREAS:
            getattr(self._github.rest, area)

    def for_installation(self, installation_id: int) -> GitHubApi:
        """Return a client acting as the installation."""
        return InstallationClient(self._github, installation_id, self._identity, self._endpoint)

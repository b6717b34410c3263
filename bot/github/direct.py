"""The calls of a runner's start, sent straight on the shared aiohttp pool.

Every queued job makes two calls (is it still queued? register its runner). Through githubkit each
costs about 0.5 ms of CPU, four times a bare request on the same pool: httpx builds a client, parses
URLs and keeps cookies per request. A burst of jobs waits on that CPU, so these two go straight:
the same URL, headers, installation token (githubkit's, from its cache) and timeouts, and the same
translation of failures as `calls.call`. Until githubkit has cached the installation's token they go
through githubkit, which mints it; a redirect (a renamed repository) is left to githubkit to follow.
"""

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import httpx
import orjson
from githubkit import GitHub
from githubkit.versions import LATEST_VERSION
from yarl import URL

from bot.errors import TemporaryError
from bot.events import Repo
from bot.github.calls import refusal
from bot.github.transport import AiohttpTransport, client_timeout
from bot.metrics import GITHUB_CALLS

log = logging.getLogger("bot.github")
API_VERSION: Final = LATEST_VERSION  # the REST version githubkit's own calls ask for
THROUGH_GITHUBKIT: Final = object()


@dataclass
class Authorizations:
    """Each installation's Authorization header as githubkit's token cache last gave it, kept briefly.

    githubkit drops a token a minute before it expires, so one it hands out is good for a minute at
    least: kept `keep_s` (less than that), it is never sent expired. Reading githubkit's cache costs
    as much as the request itself (an httpx request built and its URL parsed twice).
    """

    keep_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    known: dict[int, tuple[float, str]] = field(default_factory=dict)

    def get(self, installation_id: int) -> str | None:
        """Return the installation's header if it was read from githubkit within `keep_s`."""
        seen = self.known.get(installation_id)
        if seen is not None and self.clock() - seen[0] >= self.keep_s:
            del self.known[installation_id]  # an old token is never kept
            return None
        return None if seen is None else seen[1]

    def put(self, installation_id: int, header: str) -> None:
        """Keep a header githubkit just gave."""
        self.known[installation_id] = (self.clock(), header)


def repo_path(repo: Repo) -> str:
    """Return the repository's REST path, its owner and name quoted (dot segments too: never resolved)."""
    return f"/repos/{segment(repo.owner)}/{segment(repo.name)}"


def segment(name: str) -> str:
    """Return a name quoted as one path segment; `.` and `..` are encoded, so no server resolves them."""
    quoted = quote(name, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


@dataclass(frozen=True)
class Endpoint:
    """What every installation's straight calls share: GitHub's API as githubkit's client is set up."""

    transport: AiohttpTransport | None  # None: githubkit's transport is another, every call goes through it
    base: str
    headers: dict[str, str]
    timeout: aiohttp.ClientTimeout
    authorizations: Authorizations

    @classmethod
    def of(cls, github: GitHub[Any], authorizations: Authorizations) -> "Endpoint":
        """Return the endpoint githubkit's client `github` calls."""
        config = github.config
        transport = config.async_transport
        return cls(
            transport if isinstance(transport, AiohttpTransport) else None,
            str(config.base_url).rstrip("/"),
            {"User-Agent": config.user_agent, "Accept": config.accept, "X-GitHub-Api-Version": API_VERSION},
            client_timeout(config.timeout.as_dict()),
            authorizations,
        )


class DirectCalls:
    """Send a call straight, as the installation githubkit's client `github` acts as."""

    def __init__(self, github: GitHub[Any], installation_id: int, endpoint: Endpoint) -> None:
        self._github = github
        self._installation_id = installation_id
        self._endpoint = endpoint

    async def json(self, name: str, method: str, path: str, body: object = None) -> Any:
        """Return the answer's JSON, or `THROUGH_GITHUBKIT`: make the call through githubkit instead.

        That is the answer when githubkit holds no token for the installation (nothing was sent), and
        to a redirect (GitHub did nothing; githubkit follows it, the token kept from another host).
        A failure raises as `calls.call` raises it: temporary for 5xx, 429 and rate limits, and
        `NotFound`, `Conflict`, `Unprocessable` or `PermanentError` for the others.
        """
        endpoint = self._endpoint
        url = endpoint.base + path
        authorization = await self._authorization()
        if authorization is None or endpoint.transport is None:
            return THROUGH_GITHUBKIT
        headers = {**endpoint.headers, "Authorization": authorization}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with endpoint.transport.session().request(
                method,
                URL(url, encoded=True),
                data=None if body is None else orjson.dumps(body),
                headers=headers,
                allow_redirects=False,
                timeout=endpoint.timeout,
                auto_decompress=True,  # the pool leaves bodies to httpx; GitHub compresses its answers
            ) as response:
                status, data = response.status, await response.read()
                answer_headers = response.headers
        except (aiohttp.ClientError, OSError) as error:  # OSError: timeouts, TLS
            GITHUB_CALLS.labels(name, "network").inc()
            raise TemporaryError(f"network error calling GitHub ({name}): {type(error).__name__}") from error
        log.info('HTTP Request: %s %s "HTTP/1.1 %s %s"', method, url, status, response.reason or "")
        if 300 <= status < 400:
            return THROUGH_GITHUBKIT
        if status >= 300:
            # Built before it is counted: a Retry-After githubkit cannot read raises, uncounted, as there.
            refused = failure(name, status, answer_headers)
            GITHUB_CALLS.labels(name, str(status)).inc()
            raise refused
        GITHUB_CALLS.labels(name, "ok").inc()
        return orjson.loads(data)  # an empty body fails as githubkit's `response.json()` fails

    async def _authorization(self) -> str | None:
        """Return the installation's Authorization header when githubkit has its token cached."""
        kept = self._endpoint.authorizations
        known = kept.get(self._installation_id)
        if known is not None:
            return known
        request = httpx.Request("GET", self._endpoint.base + "/installation/repositories")  # any such route
        flow = self._github.auth.get_auth_flow(self._github).async_auth_flow(request)
        try:
            first = await anext(flow)
        finally:
            await flow.aclose()  # a token request it would send instead is never sent
        header = first.headers.get("Authorization") if first is request else None
        if header is not None:
            kept.put(self._installation_id, header)
        return header


def failure(name: str, status: int, headers: Mapping[str, str]) -> Exception:
    """Return the error `calls.call` raises for such an answer (githubkit's rate-limit rules first)."""
    if status in (403, 429):
        retry_after = _rate_limited(headers)
        if retry_after is not None:
            return TemporaryError(f"GitHub rate limit on {name}", retry_after)
    return refusal(name, status, headers)


def _rate_limited(headers: Mapping[str, str]) -> float | None:
    """Return the seconds to wait when a 403 or 429 is a rate limit (githubkit's test), else None."""
    if "retry-after" in headers:
        return float(int(headers["retry-after"]))
    if headers.get("x-ratelimit-remaining") != "0":
        return None
    if "x-ratelimit-reset" in headers:
        reset = datetime.fromtimestamp(int(headers["x-ratelimit-reset"]), tz=UTC)
        return max((reset - datetime.now(tz=UTC)).total_seconds(), 0.0)
    return 60.0

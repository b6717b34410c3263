"""One GitHub API call: counted by outcome, its failure translated into temporary or permanent."""

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx
from githubkit.exception import RateLimitExceeded, RequestError, RequestFailed

from bot.errors import PermanentError, TemporaryError
from bot.metrics import GITHUB_CALLS

T = TypeVar("T")


class NotFound(PermanentError):
    """GitHub answered 404."""


class Conflict(PermanentError):
    """GitHub answered 409."""


class Unprocessable(PermanentError):
    """GitHub answered 422 (a ref that is not a fast-forward, one that already exists)."""


_KINDS: dict[int, type[PermanentError]] = {404: NotFound, 409: Conflict, 422: Unprocessable}


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
        raise refusal(name, status, error.response.headers) from error
    except (RequestError, httpx.TransportError) as error:
        GITHUB_CALLS.labels(name, "network").inc()
        raise TemporaryError(f"network error calling GitHub ({name}): {type(error).__name__}") from error
    GITHUB_CALLS.labels(name, "ok").inc()
    return result


def refusal(name: str, status: int, headers: Mapping[str, str]) -> PermanentError | TemporaryError:
    """Return the error for an answer of `status` that is not a rate limit: temporary for 5xx and 429."""
    if status >= 500 or status == 429:
        value = headers.get("retry-after")
        retry_after = float(value) if value and value.isdigit() else None
        return TemporaryError(f"GitHub answered {status} to {name}", retry_after)
    return _KINDS.get(status, PermanentError)(f"GitHub answered {status} to {name}")


def body_of(response: Any) -> Any:  # JSON, read leniently field by field
    """Return a response's JSON."""
    return response.json()

"""The App's webhook deliveries, as the App itself (its JWT): list them, read one, redeliver one.

GitHub keeps every attempt to deliver a webhook: each has its own `id`, and the attempts of one
delivery share its `guid` (the `X-GitHub-Delivery` header). GitHub never tries again by itself;
`POST /app/hook/deliveries/{id}/attempts` asks it to.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from githubkit import AppAuthStrategy, GitHub

from bot.errors import PermanentError
from bot.github.calls import body_of, call
from bot.github.client import GITHUB_TIMEOUT, SharedTransport

PAGE_SIZE = 100  # the most GitHub lists on one page
MAX_PAGES = 10  # a pass looks at the newest thousand attempts at most


@dataclass(frozen=True)
class DeliveryAttempt:
    """One attempt to deliver a webhook, as GitHub lists it."""

    id: int  # this attempt's: what to read or redeliver
    guid: str  # the delivery's, shared by its redeliveries
    delivered_at: datetime
    status: str  # "OK", or what went wrong ("failed to connect to host", "Invalid HTTP Response: 503")
    status_code: int  # 0 when no answer came
    event: str
    action: str
    redelivery: bool

    @property
    def succeeded(self) -> bool:
        """Return whether the receiver acknowledged this attempt."""
        return 200 <= self.status_code < 300 and self.status.upper() == "OK"


@dataclass(frozen=True)
class DeliveryRequest:
    """What GitHub sent in one attempt: its headers and its payload (parsed JSON)."""

    attempt: DeliveryAttempt
    headers: dict[str, str]
    payload: dict[str, Any]


class AppHooks(Protocol):
    """The App's webhook deliveries."""

    async def recent_deliveries(self, since: datetime, max_pages: int = MAX_PAGES) -> list[DeliveryAttempt]:
        """Return the attempts delivered at or after `since`, newest first, from `max_pages` pages at most."""
        ...

    async def delivery_request(self, attempt_id: int) -> DeliveryRequest:
        """Return what GitHub sent in one attempt."""
        ...

    async def redeliver(self, attempt_id: int) -> None:
        """Ask GitHub to deliver an attempt's payload again (with the same guid)."""
        ...


class AppHooksClient:
    """`AppHooks` over githubkit, authenticated as the App (a JWT, no installation token)."""

    def __init__(self, github: GitHub[AppAuthStrategy]) -> None:
        self._github = github
        self._rest: Any = github.rest

    async def recent_deliveries(self, since: datetime, max_pages: int = MAX_PAGES) -> list[DeliveryAttempt]:
        """Return the attempts delivered at or after `since`, newest first, following the `Link` cursor."""

        async def collect() -> list[DeliveryAttempt]:
            pages = self._rest.paginate(
                self._rest.apps.async_list_webhook_deliveries, per_page=PAGE_SIZE, map_func=body_of
            )
            found: list[DeliveryAttempt] = []
            async for item in pages:
                attempt = read_attempt(item)
                if attempt is None:
                    continue
                if attempt.delivered_at < since or len(found) >= max_pages * PAGE_SIZE:
                    break
                found.append(attempt)
            return found

        return await call("list_hook_deliveries", collect)

    async def delivery_request(self, attempt_id: int) -> DeliveryRequest:
        """Return what GitHub sent in one attempt."""
        response = await call(
            "get_hook_delivery", lambda: self._rest.apps.async_get_webhook_delivery(attempt_id)
        )
        data = body_of(response)
        attempt = read_attempt(data)
        if attempt is None:
            raise PermanentError(f"GitHub's delivery {attempt_id} has no guid or no time")
        request = data.get("request") or {}
        headers = {str(k): str(v) for k, v in (request.get("headers") or {}).items()}
        payload = request.get("payload")
        return DeliveryRequest(attempt, headers, payload if isinstance(payload, dict) else {})

    async def redeliver(self, attempt_id: int) -> None:
        """Ask GitHub to deliver an attempt's payload again."""
        await call(
            "redeliver_hook_delivery", lambda: self._rest.apps.async_redeliver_webhook_delivery(attempt_id)
        )


def app_hooks(app_id: int, private_key: str, api_url: str) -> AppHooksClient:
    """Return the App's webhook client: as the App, with the same timeouts as every other call."""
    github = GitHub(
        AppAuthStrategy(str(app_id), private_key),
        base_url=api_url,
        timeout=GITHUB_TIMEOUT,
        auto_retry=False,  # the next pass is the retry
        http_cache=False,  # a delivery listing must be fresh
        async_transport=SharedTransport(GITHUB_TIMEOUT, retries=0),
    )
    return AppHooksClient(github)


def read_attempt(item: Any) -> DeliveryAttempt | None:  # JSON, read leniently field by field
    """Return an attempt from GitHub's JSON, or None without an id, a guid or a time."""
    if not isinstance(item, dict) or not item.get("guid") or not isinstance(item.get("id"), int):
        return None
    try:
        delivered_at = datetime.fromisoformat(str(item.get("delivered_at")))
        status_code = int(item.get("status_code") or 0)
    except (TypeError, ValueError):
        return None
    return DeliveryAttempt(
        id=item["id"],
        guid=str(item["guid"]),
        delivered_at=delivered_at if delivered_at.tzinfo else delivered_at.replace(tzinfo=UTC),
        status=str(item.get("status") or ""),
        status_code=status_code,
        event=str(item.get("event") or ""),
        action=str(item.get("action") or ""),
        redelivery=bool(item.get("redelivery")),
    )

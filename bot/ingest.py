"""Acknowledge webhook deliveries: verify, record durably (group commit), answer; never handle here."""

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

from bot.batching import MicroBatcher
from bot.delivery import Delivery, RejectedDelivery, parse_delivery
from bot.events import ordering_key
from bot.inbox import Inbox, NewDelivery
from bot.metrics import DELIVERIES, KNOWN_EVENTS, MAX_ACTION_LABEL, OTHER, UNVERIFIED, event_label
from bot.router import Router


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to a delivery."""

    status: HTTPStatus
    message: str


class Ingest:
    """Turn requests into recorded deliveries; concurrent ones share one database transaction."""

    def __init__(self, inbox: Inbox, router: Router, secret: bytes, wake: Callable[[], None]) -> None:
        self._router = router
        self._secret = secret
        self._wake = wake
        self._writer: MicroBatcher[NewDelivery, bool] = MicroBatcher(
            inbox.record, max_batch=256, in_thread=not inbox.writes_locally
        )

    async def receive(self, headers: dict[str, str], body: bytes) -> Answer:
        """Return the answer for one request; a 202 means the delivery is safely stored (or ignored)."""
        try:
            delivery = parse_delivery(headers, body, self._secret)
        except RejectedDelivery as rejection:
            # A header of a request whose signature did not check never becomes a label value.
            event = event_label(headers.get("x-github-event", "")) if rejection.verified else UNVERIFIED
            DELIVERIES.labels(event, "", f"rejected_{rejection.status.value}").inc()
            return Answer(rejection.status, str(rejection))
        return await self._accept(delivery, body)

    async def _accept(self, delivery: Delivery, body: bytes) -> Answer:
        event, action = delivery.event, delivery.action
        # Label values from fixed sets only: the headers are not signed, a replayed body can carry any.
        labels = (event, action[:MAX_ACTION_LABEL]) if event in KNOWN_EVENTS else (OTHER, "")
        if event == "ping":
            DELIVERIES.labels(*labels, "ping").inc()
            return Answer(HTTPStatus.OK, "pong")
        if not self._router.wants(event, action):
            DELIVERIES.labels(*labels, "ignored").inc()
            return Answer(HTTPStatus.ACCEPTED, "no handler wants this event")
        is_new = await self._writer.submit(NewDelivery(delivery, ordering_key(delivery), body))
        DELIVERIES.labels(*labels, "queued" if is_new else "duplicate").inc()
        if is_new:
            self._wake()
        return Answer(HTTPStatus.ACCEPTED, "queued" if is_new else "already received")

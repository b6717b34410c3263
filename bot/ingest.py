"""Acknowledge webhook deliveries: verify, record durably (group commit), answer; never handle here."""

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

from bot.batching import MicroBatcher
from bot.delivery import Delivery, RejectedDelivery, parse_delivery
from bot.events import ordering_key
from bot.inbox import Inbox, NewDelivery
from bot.metrics import DELIVERIES
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
            event = headers.get("x-github-event", "")
            DELIVERIES.labels(event[:64], "", f"rejected_{rejection.status.value}").inc()
            return Answer(rejection.status, str(rejection))
        return await self._accept(delivery, body)

    async def _accept(self, delivery: Delivery, body: bytes) -> Answer:
        labels = (delivery.event, delivery.action)
        if delivery.event == "ping":
            DELIVERIES.labels(*labels, "ping").inc()
            return Answer(HTTPStatus.OK, "pong")
        if not self._router.wants(*labels):
            DELIVERIES.labels(*labels, "ignored").inc()
            return Answer(HTTPStatus.ACCEPTED, "no handler wants this event")
        is_new = await self._writer.submit(NewDelivery(delivery, ordering_key(delivery), body))
        DELIVERIES.labels(*labels, "queued" if is_new else "duplicate").inc()
        if is_new:
            self._wake()
        return Answer(HTTPStatus.ACCEPTED, "queued" if is_new else "already received")

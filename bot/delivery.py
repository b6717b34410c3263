"""Webhook deliveries: verification and parsing, pure functions over values (no I/O)."""

import hashlib
import hmac
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

MAX_BODY_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery: which event, which action, its id and its payload."""

    event: str
    delivery_id: str
    payload: dict[str, Any]

    @property
    def action(self) -> str:
        """Return the payload's action, or "" for events without one."""
        action = self.payload.get("action")
        return action if isinstance(action, str) else ""


class RejectedDelivery(Exception):
    """A request that is not a valid delivery; `status` is what to answer."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def signature_of(secret: bytes, body: bytes) -> str:
    """Return the `X-Hub-Signature-256` header value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """Return whether the header is the body's HMAC-SHA256, compared in constant time."""
    if not header:
        return False
    return hmac.compare_digest(signature_of(secret, body).encode(), header.encode())


def parse_delivery(headers: dict[str, str], body: bytes, secret: bytes) -> Delivery:
    """Verify and parse a delivery, or raise `RejectedDelivery` with the status to answer."""
    if len(body) > MAX_BODY_BYTES:
        raise RejectedDelivery(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body is over 25 MB")
    if not verify_signature(secret, body, headers.get("x-hub-signature-256")):
        raise RejectedDelivery(HTTPStatus.UNAUTHORIZED, "missing or wrong X-Hub-Signature-256")
    event, delivery_id = headers.get("x-github-event"), headers.get("x-github-delivery")
    if not event or not delivery_id:
        raise RejectedDelivery(HTTPStatus.BAD_REQUEST, "X-GitHub-Event and X-GitHub-Delivery are required")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RejectedDelivery(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise RejectedDelivery(HTTPStatus.BAD_REQUEST, "the body is not a JSON object")
    return Delivery(event=event, delivery_id=delivery_id, payload=payload)

"""Webhook deliveries: verification and parsing, pure functions over values (no I/O)."""

import hashlib
import hmac
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypedDict

import msgspec
import orjson

MAX_BODY_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery: which event, which action, its id and its payload.

    At ingest the payload holds only its routing fields (`ROUTING_FIELDS`); a worker reads the
    whole payload back from the inbox.
    """

    event: str
    delivery_id: str
    payload: dict[str, Any]

    @property
    def action(self) -> str:
        """Return the payload's action, or "" for events without one."""
        action = self.payload.get("action")
        return action if isinstance(action, str) else ""


class RejectedDelivery(Exception):
    """A request that is not a valid delivery; `status` is what to answer.

    `verified`: its signature checked, so its `X-GitHub-Event` came with a body GitHub signed.
    """

    def __init__(self, status: HTTPStatus, reason: str, verified: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.verified = verified


class _Numbered(TypedDict, total=False):
    number: Any
    pull_request: Any


class _Named(TypedDict, total=False):
    full_name: Any


class _Titled(TypedDict, total=False):
    display_title: Any


class _Routing(TypedDict, total=False):
    action: Any
    repository: _Named | None
    pull_request: _Numbered | None
    issue: _Numbered | None
    workflow_run: _Titled | None


ROUTING_FIELDS = tuple(_Routing.__annotations__)
# Decoding into a few declared fields checks the whole document's syntax but builds only those
# fields: several times faster than a full parse of a ~30 KB payload.
_routing_decoder = msgspec.json.Decoder(_Routing)


def routing_fields(body: bytes) -> dict[str, Any]:
    """Return the fields that route and order a delivery; raise `RejectedDelivery` unless a JSON object."""
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError:
            raise RejectedDelivery(HTTPStatus.BAD_REQUEST, "the body is not UTF-8") from None
    try:
        return dict(_routing_decoder.decode(body))
    except msgspec.ValidationError:  # valid JSON with a field of an unexpected shape: read leniently
        payload = orjson.loads(body)
    except msgspec.DecodeError:
        raise RejectedDelivery(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise RejectedDelivery(HTTPStatus.BAD_REQUEST, "the body is not a JSON object")
    return {key: payload[key] for key in ROUTING_FIELDS if key in payload}


def signature_of(secret: bytes, body: bytes) -> str:
    """Return the `X-Hub-Signature-256` header value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """Return whether the header is exactly the body's `sha256=<lowercase hex>`, compared in constant time.

    Both sides are compared whole (`compare_digest` is false for any difference in length), so a
    prefix of the right value (`sha256=`, a truncated digest) is refused, as is anything else
    that is not byte for byte what GitHub sends: another case, spaces, the `sha1=` form.
    """
    if not header:
        return False
    return hmac.compare_digest(signature_of(secret, body).encode(), header.encode())


def parse_delivery(headers: dict[str, str], body: bytes, secret: bytes) -> Delivery:
    """Verify a delivery and read its routing fields, or raise `RejectedDelivery` with the answer."""
    if len(body) > MAX_BODY_BYTES:
        raise RejectedDelivery(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body is over 25 MB")
    if not verify_signature(secret, body, headers.get("x-hub-signature-256")):
        raise RejectedDelivery(HTTPStatus.UNAUTHORIZED, "missing or wrong X-Hub-Signature-256")
    event, delivery_id = headers.get("x-github-event"), headers.get("x-github-delivery")
    if not event or not delivery_id:
        raise RejectedDelivery(
            HTTPStatus.BAD_REQUEST, "X-GitHub-Event and X-GitHub-Delivery are required", verified=True
        )
    try:
        payload = routing_fields(body)
    except RejectedDelivery as rejection:
        raise RejectedDelivery(rejection.status, str(rejection), verified=True) from None
    return Delivery(event=event, delivery_id=delivery_id, payload=payload)

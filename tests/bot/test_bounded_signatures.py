"""No signature header but the exact right one is accepted: not a prefix of it, not a variant.

Each case is checked on `verify_signature` directly and through `POST /webhook` (401, nothing stored).
A comparison such as `expected.startswith(header)` passes the prefixes; `.lower()` the uppercase one;
`.strip()` the spaced ones.
"""

import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest

from bot.delivery import signature_of, verify_signature
from bot.inbox import Inbox
from bot.ingest import Ingest
from bot.router import Router
from bot.web import create_app
from tests.fakes import SECRET, body_of, comment_payload, memory_inbox, signed_headers

BODY = body_of(comment_payload("/help"))
RIGHT = signature_of(SECRET, BODY)
HEX = RIGHT.removeprefix("sha256=")

WRONG: dict[str, Callable[[], str]] = {
    "the prefix alone": lambda: "sha256=",
    "empty": lambda: "",
    "one hex digit": lambda: RIGHT[:8],
    "half the digest": lambda: RIGHT[: 7 + 32],
    "all but the last digit": lambda: RIGHT[:-1],
    "one digit too many": lambda: RIGHT + "0",
    "uppercase hex": lambda: "sha256=" + HEX.upper(),
    "uppercase prefix": lambda: "SHA256=" + HEX,
    "no prefix": lambda: HEX,
    "a space before": lambda: " " + RIGHT,
    "a space after": lambda: RIGHT + " ",
    "a space inside": lambda: "sha256= " + HEX,
    "the sha1 form": lambda: "sha1=" + hmac.new(SECRET, BODY, hashlib.sha1).hexdigest(),
    "another body's": lambda: signature_of(SECRET, BODY + b" "),
    "another secret's": lambda: signature_of(b"guess", BODY),
    "two headers joined": lambda: f"{RIGHT},{RIGHT}",
}


@pytest.mark.parametrize("case", WRONG)
def test_verify_signature_refuses(case: str) -> None:
    assert not verify_signature(SECRET, BODY, WRONG[case]())


def test_verify_signature_accepts_only_the_exact_value() -> None:
    assert verify_signature(SECRET, BODY, RIGHT)
    assert not verify_signature(SECRET, BODY, None)


@dataclass
class Webhook:
    http: httpx.AsyncClient
    inbox: Inbox


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    inbox = memory_inbox()
    ingest = Ingest(inbox, Router.compose([]), SECRET, lambda: None)
    transport = httpx.ASGITransport(create_app(inbox, ingest, None))
    async with httpx.AsyncClient(transport=transport, base_url="http://bot") as http:
        yield Webhook(http, inbox)


@pytest.mark.parametrize("case", WRONG)
async def test_post_webhook_with_a_wrong_signature_is_401(webhook: Webhook, case: str) -> None:
    headers = {**signed_headers("issue_comment", BODY), "x-hub-signature-256": WRONG[case]()}
    response = await webhook.http.post("/webhook", content=BODY, headers=headers)
    assert response.status_code == 401
    assert webhook.inbox.counts() == {}


async def test_the_sha1_header_alone_is_401(webhook: Webhook) -> None:
    headers = signed_headers("issue_comment", BODY)
    del headers["x-hub-signature-256"]
    headers["x-hub-signature"] = "sha1=" + hmac.new(SECRET, BODY, hashlib.sha1).hexdigest()
    assert (await webhook.http.post("/webhook", content=BODY, headers=headers)).status_code == 401
    assert webhook.inbox.counts() == {}


async def test_the_right_signature_is_accepted(webhook: Webhook) -> None:
    response = await webhook.http.post(
        "/webhook", content=BODY, headers=signed_headers("issue_comment", BODY)
    )
    assert response.status_code == 202

"""What a webhook request is answered, exactly: the size limit at its boundary, and for each refusal
its status, its reason (the body of the answer) and whether its signature had checked.

`verified` decides whether a request's `X-GitHub-Event` may become a metric label: it must be true
only once the signature checked. Written to kill the mutants scripts/mutation found alive.
"""

from http import HTTPStatus

import pytest

from bot.delivery import MAX_BODY_BYTES, RejectedDelivery, parse_delivery
from tests.fakes import SECRET, signed_headers


def rejection_of(headers: dict[str, str], body: bytes) -> RejectedDelivery:
    with pytest.raises(RejectedDelivery) as caught:
        parse_delivery(headers, body, SECRET)
    return caught.value


def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_a_413() -> None:
    start = b'{"action": "opened"}'
    body = start + b" " * (MAX_BODY_BYTES - len(start))
    assert len(body) == MAX_BODY_BYTES
    assert parse_delivery(signed_headers("push", body, "d-1"), body, SECRET).action == "opened"
    over = body + b" "
    refused = rejection_of(signed_headers("push", over), over)
    assert refused.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert str(refused) == "the body is over 25 MB"
    assert refused.verified is False


@pytest.mark.parametrize("header", [None, "sha256=" + "0" * 64])
def test_a_missing_or_wrong_signature_is_a_401_and_not_verified(header: str | None) -> None:
    body = b'{"action": "opened"}'
    headers = signed_headers("push", body)
    del headers["x-hub-signature-256"]
    if header is not None:
        headers["x-hub-signature-256"] = header
    refused = rejection_of(headers, body)
    assert refused.status == HTTPStatus.UNAUTHORIZED
    assert str(refused) == "missing or wrong X-Hub-Signature-256"
    assert refused.verified is False


@pytest.mark.parametrize("missing", ["x-github-event", "x-github-delivery"])
def test_a_signed_request_without_its_event_or_id_is_a_verified_400(missing: str) -> None:
    body = b'{"action": "opened"}'
    headers = signed_headers("push", body)
    del headers[missing]
    refused = rejection_of(headers, body)
    assert refused.status == HTTPStatus.BAD_REQUEST
    assert str(refused) == "X-GitHub-Event and X-GitHub-Delivery are required"
    assert refused.verified is True


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"action": "\xff"}', "the body is not UTF-8"),
        (b"not json", "the body is not JSON"),
        (b"[1, 2]", "the body is not a JSON object"),
    ],
)
def test_a_signed_body_that_does_not_parse_is_a_verified_400_that_says_why(body: bytes, reason: str) -> None:
    refused = rejection_of(signed_headers("push", body), body)
    assert refused.status == HTTPStatus.BAD_REQUEST
    assert str(refused) == reason
    assert refused.verified is True


def test_a_rejection_is_unverified_unless_said() -> None:
    rejection = RejectedDelivery(HTTPStatus.BAD_REQUEST, "why")
    assert (rejection.status, str(rejection), rejection.verified) == (HTTPStatus.BAD_REQUEST, "why", False)

from http import HTTPStatus

import pytest

from bot.delivery import RejectedDelivery, parse_delivery, signature_of, verify_signature
from tests.fakes import SECRET, signed_headers


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    # The example from GitHub's documentation on validating webhook deliveries.
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature_of(b"It's a Secret to Everybody", b"Hello, World!") == header
    assert verify_signature(b"It's a Secret to Everybody", b"Hello, World!", header)
    assert not verify_signature(b"It's a Secret to Everybody", b"Hello, World?", header)
    assert not verify_signature(b"It's a Secret to Everybody", b"Hello, World!", None)
    assert not verify_signature(b"It's a Secret to Everybody", b"Hello, World!", "sha1=abc")


def test_a_valid_delivery_is_parsed() -> None:
    body = b'{"action": "opened", "number": 3}'
    delivery = parse_delivery(signed_headers("pull_request", body, "d-1"), body, SECRET)
    assert (delivery.event, delivery.action, delivery.delivery_id) == ("pull_request", "opened", "d-1")


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda h: h.pop("x-hub-signature-256"), HTTPStatus.UNAUTHORIZED),
        (lambda h: h.update({"x-hub-signature-256": "sha256=" + "0" * 64}), HTTPStatus.UNAUTHORIZED),
        (lambda h: h.pop("x-github-event"), HTTPStatus.BAD_REQUEST),
        (lambda h: h.pop("x-github-delivery"), HTTPStatus.BAD_REQUEST),
    ],
)
def test_bad_headers_are_rejected(mutate: object, status: HTTPStatus) -> None:
    body = b'{"action": "opened"}'
    headers = signed_headers("pull_request", body)
    mutate(headers)  # type: ignore[operator]
    with pytest.raises(RejectedDelivery) as caught:
        parse_delivery(headers, body, SECRET)
    assert caught.value.status == status


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b""])
def test_a_signed_body_that_is_not_a_json_object_is_a_400(body: bytes) -> None:
    with pytest.raises(RejectedDelivery) as caught:
        parse_delivery(signed_headers("push", body), body, SECRET)
    assert caught.value.status == HTTPStatus.BAD_REQUEST


def test_an_oversized_body_is_a_413_before_any_hashing() -> None:
    body = b" " * (25 * 1024 * 1024 + 1)
    with pytest.raises(RejectedDelivery) as caught:
        parse_delivery({}, body, SECRET)
    assert caught.value.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE

import gzip
import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
import pytest

from bot.delivery import (
    ROUTING_FIELDS,
    Delivery,
    RejectedDelivery,
    parse_delivery,
    routing_fields,
    signature_of,
    verify_signature,
)
from bot.events import ordering_key
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


EXAMPLES: list[dict[str, Any]] = json.loads(
    gzip.decompress((Path(__file__).parent.parent / "fixtures/webhook-examples.json.gz").read_bytes())
)


def test_the_routing_fields_of_every_real_payload_route_and_order_it_as_the_whole_payload() -> None:
    for example in EXAMPLES:
        body = orjson.dumps(example["payload"])
        whole = Delivery(example["event"], "d-1", example["payload"])
        routed = Delivery(example["event"], "d-1", routing_fields(body))
        assert (routed.action, ordering_key(routed)) == (whole.action, ordering_key(whole)), example["event"]
        assert set(routed.payload) <= set(ROUTING_FIELDS)


@pytest.mark.parametrize(
    ("payload", "action", "key"),
    [
        ({"action": 3, "repository": "octo/model"}, "", "delivery:d-1"),
        (
            {"action": "opened", "repository": {"full_name": ["x"]}, "pull_request": None},
            "opened",
            "delivery:d-1",
        ),
        (
            {"repository": {"full_name": "octo/model"}, "issue": {"number": "7", "pull_request": {}}},
            "",
            "delivery:d-1",
        ),
        (
            {"repository": {"full_name": "octo/model"}, "issue": {"number": 7, "pull_request": {}}},
            "",
            "octo/model#7",
        ),
        ({"repository": {"full_name": "octo/model"}, "workflow_run": "run"}, "", "delivery:d-1"),
    ],
)
def test_routing_fields_of_unexpected_shapes_are_read_leniently(
    payload: dict[str, Any], action: str, key: str
) -> None:
    routed = Delivery("pull_request", "d-1", routing_fields(orjson.dumps(payload)))
    assert (routed.action, ordering_key(routed)) == (action, key)


@pytest.mark.parametrize(
    "body", [b'{"action": "opened"} trailing', b'{"action": "opened", "x": tru}', b'{"x": "\xff\xfe"}']
)
def test_a_body_that_is_not_json_in_utf8_is_a_400_even_where_no_field_is_read(body: bytes) -> None:
    with pytest.raises(RejectedDelivery) as caught:
        parse_delivery(signed_headers("push", body), body, SECRET)
    assert caught.value.status == HTTPStatus.BAD_REQUEST

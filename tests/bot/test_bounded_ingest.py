"""What unsigned requests can make the ingest hold, and what they can add to the metrics.

Attacks: 40 parallel 24 MiB bodies (by `Content-Length`, and chunked without one); a body that
stalls; 1,000 unsigned requests with random event names.
"""

import asyncio
import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.types import Message, Receive, Scope, Send

from bot import webhook_endpoint
from bot.ingest import Ingest
from bot.router import Router
from bot.webhook_endpoint import MAX_INFLIGHT_BODY_BYTES, BodyBudget, WebhookFirst
from tests.fakes import SECRET, body_of, comment_payload, memory_inbox, signed_headers

MiB = 1024 * 1024
CHUNK = b" " * MiB  # one object: the test itself holds a megabyte, whatever the server keeps


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def endpoint(budget: BodyBudget, ingest: Ingest | None = None) -> WebhookFirst:
    return WebhookFirst(
        not_found, "/webhook", ingest or Ingest(memory_inbox(), Router(), SECRET, lambda: None), budget
    )


@dataclass
class Traffic:
    """Drives requests into the ASGI app and measures the body bytes it was handed and not answered.

    That is an upper bound of what the app can hold, whatever it does inside: measured from outside.
    """

    outstanding: int = 0
    peak: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    at_gate: int = 0

    async def request(
        self,
        app: WebhookFirst,
        chunks: int,
        declared: bool,
        hold_last: bool = False,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[bytes, bytes], int]:
        """Send `chunks` megabytes; return the status, the answer's headers and the bytes handed over."""
        sent, answered = 0, False
        status, answer_headers = 0, {}
        raw = [(k.encode(), v.encode()) for k, v in (headers or {"x-github-event": "push"}).items()]
        if declared:
            raw.append((b"content-length", str(chunks * MiB).encode()))
        scope = {"type": "http", "path": "/webhook", "method": "POST", "headers": raw}

        async def receive() -> Message:
            nonlocal sent
            if hold_last and sent == (chunks - 1) * MiB:
                self.at_gate += 1
                await self.gate.wait()
            await asyncio.sleep(0)  # other requests go on between chunks
            sent += MiB
            if not answered:
                self.outstanding += MiB
                self.peak = max(self.peak, self.outstanding)
            return {"type": "http.request", "body": CHUNK, "more_body": sent < chunks * MiB}

        async def send(message: Message) -> None:
            nonlocal answered, status, answer_headers
            if message["type"] == "http.response.start":
                answered = True
                self.outstanding -= sent
                status, answer_headers = message["status"], dict(message["headers"])

        await app(scope, receive, send)
        return status, answer_headers, sent


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the requests never got there")


async def test_40_parallel_24_mib_bodies_never_hold_more_than_the_budget() -> None:
    # Before: every body was read whole before its signature was checked: 40 x 24 MiB held at once.
    budget, traffic = BodyBudget(64 * MiB), Traffic()
    app = endpoint(budget)
    tasks = [asyncio.create_task(traffic.request(app, 24, declared=True, hold_last=True)) for _ in range(40)]
    await until(lambda: traffic.at_gate + sum(t.done() for t in tasks) == 40)
    held_while_stalled = traffic.outstanding
    traffic.gate.set()
    answers = await asyncio.gather(*tasks)

    assert traffic.peak <= 64 * MiB
    assert held_while_stalled <= 64 * MiB
    assert budget.peak <= 64 * MiB
    assert budget.held == 0  # every byte given back
    refused = [(headers, sent) for status, headers, sent in answers if status == 503]
    assert len(refused) == 38  # two 24 MiB bodies fit in 64 MiB; the others wait for GitHub's retry
    assert all(headers[b"retry-after"] == b"1" and sent == 0 for headers, sent in refused)  # none read
    assert sorted(status for status, _, _ in answers if status != 503) == [401, 401]  # unsigned


async def test_chunked_bodies_without_a_length_are_counted_as_they_stream() -> None:
    budget, traffic = BodyBudget(64 * MiB), Traffic()
    app = endpoint(budget)
    answers = await asyncio.gather(*(traffic.request(app, 24, declared=False) for _ in range(40)))
    assert traffic.peak <= 64 * MiB + 40 * MiB  # at most the budget, and each request's chunk in hand
    assert budget.peak <= 64 * MiB
    assert budget.held == 0
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {401, 503}
    assert statuses.count(503) >= 38
    assert all(headers[b"retry-after"] == b"1" for status, headers, _ in answers if status == 503)


async def test_one_chunked_body_is_refused_at_the_chunk_that_passes_the_budget() -> None:
    budget, traffic = BodyBudget(4 * MiB), Traffic()
    status, headers, sent = await traffic.request(endpoint(budget), 10, declared=False)
    assert (status, headers[b"retry-after"]) == (503, b"1")
    assert sent == 5 * MiB  # four kept, the fifth read and dropped, the rest never read
    assert budget.held == 0


async def test_a_declared_body_over_the_budget_left_is_refused_before_a_byte_is_read() -> None:
    budget, traffic = BodyBudget(64 * MiB), Traffic()
    budget.take(60 * MiB)  # other requests in flight
    status, _, sent = await traffic.request(endpoint(budget), 5, declared=True)
    assert (status, sent) == (503, 0)
    budget.give(60 * MiB)
    status, _, sent = await traffic.request(endpoint(budget), 5, declared=True)
    assert (status, sent) == (401, 5 * MiB)
    assert budget.held == 0


async def test_over_25_mb_by_content_length_is_413_before_reading() -> None:
    budget, traffic = BodyBudget(64 * MiB), Traffic()
    status, _, sent = await traffic.request(endpoint(budget), 26, declared=True)
    assert (status, sent) == (413, 0)
    assert budget.held == 0


@pytest.mark.parametrize(("length", "status"), [("²", 401), ("9" * 5000, 413), ("-5", 401), ("0x10", 401)])
async def test_a_content_length_that_is_no_plain_number_is_not_a_crash(length: str, status: int) -> None:
    budget = BodyBudget(64 * MiB)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "path": "/webhook",
        "method": "POST",
        "headers": [(b"content-length", length.encode("latin-1"))],
    }
    await endpoint(budget)(scope, receive, send)
    assert sent[0]["status"] == status
    assert budget.held == 0


async def test_a_stalled_body_is_408_and_gives_its_share_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_endpoint, "BODY_READ_SECONDS", 0.05)
    budget, traffic = BodyBudget(64 * MiB), Traffic()
    status, _, _ = await traffic.request(endpoint(budget), 24, declared=True, hold_last=True)
    assert status == 408
    assert budget.held == 0


async def test_a_small_body_that_stalls_after_its_first_part_is_408(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_endpoint, "BODY_READ_SECONDS", 0.05)
    budget = BodyBudget(64 * MiB)
    parts: Iterator[Message] = iter([{"type": "http.request", "body": b"{" * 5000, "more_body": True}])
    sent: list[Message] = []

    async def receive() -> Message:
        for part in parts:
            return part
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/webhook", "method": "POST", "headers": [(b"content-length", b"10000")]}
    await endpoint(budget)(scope, receive, send)
    assert sent[0]["status"] == 408
    assert budget.held == 0


async def test_a_client_that_leaves_mid_body_gives_its_share_back() -> None:
    budget = BodyBudget(64 * MiB)
    messages: Iterator[Message] = iter(
        [{"type": "http.request", "body": CHUNK, "more_body": True}, {"type": "http.disconnect"}]
    )
    sent: list[Message] = []

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message)

    await endpoint(budget)(
        {"type": "http", "path": "/webhook", "method": "POST", "headers": []}, receive, send
    )
    assert sent == []  # nobody to answer
    assert budget.held == 0


class BrokenIngest(Ingest):
    async def receive(self, headers: dict[str, str], body: bytes) -> Any:
        raise OSError("the database is gone")


async def test_a_body_whose_delivery_could_not_be_stored_gives_its_share_back() -> None:
    budget = BodyBudget(64 * MiB)
    app = endpoint(budget, BrokenIngest(memory_inbox(), Router(), SECRET, lambda: None))
    body = body_of(comment_payload("/help"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bot") as http:
        response = await http.post("/webhook", content=body, headers=signed_headers("issue_comment", body))
    assert response.status_code == 503
    assert budget.held == 0


def test_the_process_wide_budget_is_64_mib() -> None:
    assert 64 * MiB == MAX_INFLIGHT_BODY_BYTES
    assert webhook_endpoint.BODY_BUDGET.limit == MAX_INFLIGHT_BODY_BYTES


def label_sets() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for metric in REGISTRY.collect()
        if metric.name.startswith("orbit_")
        for sample in metric.samples
    }


def random_name(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits + "_-", k=rng.randint(1, 60)))


async def post_all(app: WebhookFirst, requests: list[tuple[bytes, dict[str, str]]]) -> list[int]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bot") as http:
        return [
            (await http.post("/webhook", content=body, headers=headers)).status_code
            for body, headers in requests
        ]


async def test_1000_unsigned_requests_with_random_event_names_add_no_label_value() -> None:
    # Before: each unsigned request's X-GitHub-Event became a label value: 1,000 new time series.
    rng = random.Random(7)
    app = endpoint(BodyBudget(64 * MiB))
    body = body_of({"action": "opened"})
    unsigned = {"x-github-event": "warm-up", "x-github-delivery": "d"}
    await post_all(app, [(body, unsigned), (body, {**unsigned, "x-hub-signature-256": "sha256=00"})])
    before = label_sets()
    requests = []
    for i in range(1000):
        headers = {"x-github-event": random_name(rng), "x-github-delivery": f"d-{i}"}
        if i % 2:  # half carry a signature, of another secret
            headers["x-hub-signature-256"] = signed_headers("push", body, secret=b"guess")[
                "x-hub-signature-256"
            ]
        action_body = body_of({"action": random_name(rng)})
        requests.append((action_body, headers) if i % 3 else (body, headers))
    assert set(await post_all(app, requests)) == {401}
    assert label_sets() == before


async def test_a_signed_delivery_of_an_event_github_does_not_define_is_labelled_other() -> None:
    app = endpoint(BodyBudget(64 * MiB))
    body = body_of({"action": "x" * 500})
    requests = [(body, signed_headers(random_name(random.Random(i)), body)) for i in range(50)]
    assert set(await post_all(app, requests)) == {202}
    names = {labels for name, labels in label_sets() if name == "orbit_deliveries_total"}
    assert (("action", ""), ("event", "other"), ("outcome", "ignored")) in names
    assert not any(dict(labels)["event"].startswith(("x-", "X")) for labels in names)


async def test_refused_before_the_signature_counts_as_unverified() -> None:
    app = endpoint(BodyBudget(64 * MiB))
    headers = {"x-github-event": "never-a-label", "content-length": str(26 * MiB)}

    async def receive() -> Message:
        raise AssertionError("not read")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "path": "/webhook",
        "method": "POST",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    value = REGISTRY.get_sample_value(
        "orbit_deliveries_total", {"event": "unverified", "action": "", "outcome": "rejected_413"}
    )
    assert value is not None and value >= 1
    assert not any("never-a-label" in str(labels) for _, labels in label_sets())

"""Two `orbit serve` replicas on one PostgreSQL, one SIGKILLed in the middle of a burst.

Two separate processes (as two pods would be) share a real PostgreSQL and the GitHub double. A
burst of `/help` comments over several pull requests is spread over both; one replica is killed
while it is receiving and handling; what it did not acknowledge is sent again to the survivor, as
GitHub's redelivery would. Then every delivery has exactly one reply: none lost, none answered twice.
"""

import contextlib
import re
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.inbox import DONE, Inbox, make_engine
from tests.bot.test_bot_process import bot_env
from tests.bot.test_serve_workers import Serve
from tests.fakes import body_of, comment_payload, signed_headers
from tests.github_double import GitHubState, serve_github
from tests.postgres import empty_database, postgres_url

assert postgres_url and empty_database  # fixtures, used by name
pytestmark = pytest.mark.slow

PULLS = range(1, 41)
COMMENTS_PER_PULL = 15  # 600 deliveries; the comments of one pull request are handled in order
KILL_AFTER = 200  # acknowledged deliveries, of both replicas together
LEASE_SECONDS = 5  # how long the survivor waits for what the killed replica was handling
REPLY = re.compile(r"\A<!-- orbit:reply-to (?P<comment>[0-9]+) ")


@dataclass(frozen=True)
class Comment:
    number: int
    comment_id: int
    guid: str

    def body(self) -> bytes:
        payload: dict[str, Any] = comment_payload("/help", number=self.number)
        payload["comment"]["id"] = self.comment_id
        return body_of(payload)


@dataclass
class Burst:
    """What each replica answered, and what was never acknowledged."""

    acknowledged: Counter[int] = field(default_factory=Counter)  # replica index -> 202s
    unacknowledged: list[Comment] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    kill_now: threading.Event = field(default_factory=threading.Event)

    def answered(self, replica: int) -> None:
        with self.lock:
            self.acknowledged[replica] += 1
            if sum(self.acknowledged.values()) >= KILL_AFTER:
                self.kill_now.set()

    def lost(self, comment: Comment) -> None:
        with self.lock:
            self.unacknowledged.append(comment)


def post(client: httpx.Client, url: str, comment: Comment) -> httpx.Response:
    body = comment.body()
    return client.post(
        f"{url}/webhook", content=body, headers=signed_headers("issue_comment", body, comment.guid)
    )


def send_burst(replicas: list[Serve], comments: list[Comment], burst: Burst) -> None:
    """Post every comment to replica `i % 2`, sixteen at a time; a post with no 202 is unacknowledged."""

    def deliver(indexed: tuple[int, Comment]) -> None:
        index, comment = indexed
        replica = index % len(replicas)
        try:
            response = post(client, replicas[replica].url, comment)
        except httpx.HTTPError:
            burst.lost(comment)
            return
        if response.status_code == 202:
            burst.answered(replica)
        else:
            burst.lost(comment)

    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(16) as pool:
        list(pool.map(deliver, enumerate(comments)))


def kill_when_told(victim: Serve, burst: Burst) -> threading.Thread:
    def kill() -> None:
        burst.kill_now.wait(timeout=120)
        with contextlib.suppress(ProcessLookupError):
            victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()

    killer = threading.Thread(target=kill)
    killer.start()
    return killer


def replies_per_comment(github: GitHubState) -> Counter[int]:
    return Counter(int(found["comment"]) for c in github.comments if (found := REPLY.match(c["body"])))


def test_two_replicas_answer_each_delivery_once_when_one_is_killed_mid_burst(
    empty_database: str,
    tmp_path: Path,
) -> None:
    database = empty_database
    started = time.monotonic()
    github = GitHubState(delay=0.05)
    comments = [
        Comment(number, number * 100 + k, str(uuid.uuid4()))
        for k in range(COMMENTS_PER_PULL)
        for number in PULLS
    ]
    with serve_github(github) as api_url:
        env = {
            **bot_env(api_url, tmp_path / "unused.db"),
            "ORBIT_DATABASE_URL": database,
            "ORBIT_LEASE_SECONDS": str(LEASE_SECONDS),
            "ORBIT_WORKERS": "8",
            "ORBIT_REDELIVER_INTERVAL_SECONDS": "0",  # the test plays GitHub's redelivery itself
        }
        # Both at once, on a database with no table yet: they create the schema in turns.
        replicas = []
        inbox = Inbox(make_engine(database))
        try:
            replicas = [Serve(env, 1, tmp_path / f"replica-{index}.log") for index in range(2)]
            for replica in replicas:
                replica.wait_started(1)
            burst = Burst()
            killer = kill_when_told(replicas[0], burst)
            send_burst(replicas, comments, burst)
            killer.join()
            survivor = replicas[1]
            with httpx.Client(timeout=30) as client:
                again = Counter(post(client, survivor.url, c).json()["message"] for c in burst.unacknowledged)

            deadline = time.monotonic() + 90
            while inbox.counts() != {DONE: len(comments)} and time.monotonic() < deadline:
                time.sleep(0.2)
            assert inbox.counts() == {DONE: len(comments)}, survivor.output()[-3000:]
            time.sleep(1.5)  # longer than a worker's poll: a second handling would show now
            taken_over = sum(1 for item in inbox.list_items(limit=1000) if item["attempts"] > 1)
        finally:
            for replica in replicas:
                replica.stop()
            inbox.engine.dispose()

    replies = replies_per_comment(github)
    reactions = Counter((int(r["comment"]), r["content"]) for r in github.reactions)
    print(
        f"\n{len(comments)} deliveries over {len(PULLS)} pull requests; killed replica acknowledged "
        f"{burst.acknowledged[0]}, survivor {burst.acknowledged[1]}; {len(burst.unacknowledged)} sent again "
        f"({dict(again)}); {taken_over} taken over after the kill; replies: "
        f"{Counter(replies[c.comment_id] for c in comments)} (count -> deliveries); "
        f"{time.monotonic() - started:.1f} s"
    )
    assert burst.acknowledged[0] < len(comments) // 2, "the kill came after the burst"
    assert burst.unacknowledged, "the kill lost no acknowledgement: it did not land in the burst"
    assert {c.comment_id: replies[c.comment_id] for c in comments} == {c.comment_id: 1 for c in comments}
    assert sum(replies.values()) == len(comments)
    for content in ("eyes", "rocket"):
        assert {c.comment_id: reactions[(c.comment_id, content)] for c in comments} == {
            c.comment_id: 1 for c in comments
        }

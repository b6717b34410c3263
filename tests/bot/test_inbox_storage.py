"""How the inbox stores deliveries in SQLite: compression, unreadable rows, one writer, a bounded log."""

import subprocess
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from bot import inbox as inbox_module
from bot.delivery import MAX_BODY_BYTES
from bot.inbox import DEAD, Inbox, deliveries, make_engine
from bot.payload_codec import UNREADABLE, pack, unpack
from tests.bot.test_inbox import new
from tests.fakes import body_of, comment_payload


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    box = Inbox(make_engine(f"sqlite:///{tmp_path / 'inbox.db'}"), lease_seconds=60, max_attempts=3)
    box.create_schema()
    return box


def _store_payload(inbox: Inbox, delivery_id: str, stored: bytes) -> None:
    with inbox.engine.begin() as connection:
        connection.execute(
            deliveries.update().where(deliveries.c.delivery_id == delivery_id).values(payload=stored)
        )


def test_payloads_are_stored_compressed_and_read_back() -> None:
    body = body_of(comment_payload("/help" + " and more" * 2000))
    stored = pack(body)
    assert len(stored) < len(body) / 5
    assert unpack(stored) == body


def test_payloads_stored_by_earlier_versions_with_zlib_are_still_read(inbox: Inbox) -> None:
    inbox.record([new(delivery_id="old")])
    _store_payload(inbox, "old", zlib.compress(body_of(comment_payload("/deploy")), 1))
    item = inbox.claim()
    assert item is not None
    assert item.delivery.payload["comment"]["body"] == "/deploy"


# Written by something other than the ingest: small rows that would inflate past any delivery.
BOMB = b"{" + b" " * (MAX_BODY_BYTES + 1) + b"}"


def test_a_payload_inflates_to_its_limit_and_no_further() -> None:
    body = body_of(comment_payload("/help"))
    assert unpack(pack(body), limit=len(body)) == body
    assert unpack(zlib.compress(body), limit=len(body)) == body
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(body)  # read as a stream
    assert unpack(unsized, limit=len(body)) == body
    for stored in (pack(body), zlib.compress(body), unsized):
        with pytest.raises(zlib.error, match="inflates past"):
            unpack(stored, limit=len(body) - 1)
    assert len(pack(BOMB)) < 100_000, "the attack is a small row"


@pytest.mark.parametrize(
    "stored",
    [b"\x28\xb5\x2f\xfdbroken", b"not compressed", pack(b"[1, 2]"), pack(BOMB), zlib.compress(BOMB, 9)],
)
def test_an_unreadable_payload_is_dead_lettered_and_the_next_item_claimed(
    inbox: Inbox, stored: bytes
) -> None:
    inbox.record([new(1, "broken"), new(2, "fine")])
    _store_payload(inbox, "broken", stored)
    item = inbox.claim()
    assert item is not None and item.delivery.delivery_id == "fine"
    [dead] = inbox.list_items(DEAD)
    assert (dead["delivery_id"], dead["last_error"]) == ("broken", UNREADABLE)
    assert inbox.claim() is None


HOLD_THE_LOCK = """
import fcntl, os, sys
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


class OtherWriter:
    """Another process that holds the database's writer lock until released."""

    def __init__(self, database: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLD_THE_LOCK, f"{database}.lock"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "held"

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("release\n")
        self.process.stdin.flush()
        self.process.wait(timeout=10)


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(work()))
    thread.start()
    return thread, results


def test_a_write_waits_while_another_process_writes(inbox: Inbox, tmp_path: Path) -> None:
    other = OtherWriter(tmp_path / "inbox.db")
    writer, _ = in_thread(lambda: inbox.record([new(delivery_id="waits")]))
    writer.join(timeout=0.5)
    assert writer.is_alive(), "the write went ahead while the other process held the lock"
    other.release()
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert inbox.counts() == {"pending": 1}


def test_a_log_past_its_limit_is_copied_with_writers_held_and_then_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 64
    monkeypatch.setattr(inbox_module, "WAL_LIMIT_FRAMES", limit)
    box = Inbox(make_engine(f"sqlite:///{tmp_path / 'inbox.db'}"))
    box.create_schema()
    box.record([new(delivery_id="small")])
    other = OtherWriter(tmp_path / "inbox.db")
    # Under the limit the copy runs beside writers: it does not wait for the lock.
    checkpoint, copied = in_thread(box.checkpoint)
    checkpoint.join(timeout=10)
    assert copied == [True]
    other.release()

    for batch in range(40):
        box.record([new(delivery_id=f"{batch}-{index}") for index in range(8)])
    assert (tmp_path / "inbox.db-wal").stat().st_size > limit * 4096
    other = OtherWriter(tmp_path / "inbox.db")
    checkpoint, copied = in_thread(box.checkpoint)
    checkpoint.join(timeout=0.5)
    assert checkpoint.is_alive(), "past the limit, the copy must hold writers back to catch up"
    other.release()
    checkpoint.join(timeout=10)
    assert copied == [True]
    box.record([new(delivery_id="after")])
    assert (tmp_path / "inbox.db-wal").stat().st_size <= limit * 4096


def test_the_checkpoint_of_a_database_without_a_log_is_a_no_op() -> None:
    assert Inbox(make_engine("postgresql+psycopg://nowhere.invalid/orbit")).checkpoint()
    memory = Inbox(make_engine("sqlite://"))
    memory.create_schema()
    assert memory.checkpoint()


def test_a_read_does_not_wait_for_a_writer_on_sqlite(tmp_path: Path) -> None:
    """Reads take no lock: a handler's lookup never waits behind a claim or an acknowledgement."""
    box = Inbox(make_engine(f"sqlite:///{tmp_path / 'orbit.db'}"))
    box.create_schema()
    box.record([new(delivery_id="d-1")])
    with box.engine.begin() as writer:  # holds SQLite's one writer until the block ends
        writer.exec_driver_sql("UPDATE work_items SET attempts = attempts")
        read, counts = in_thread(box.counts)
        read.join(timeout=5)
        assert not read.is_alive(), "the read waited for the writer"
    assert counts == [{"pending": 1}]
    box.engine.dispose()

"""The durable inbox: deliveries and their work items, in SQLite or PostgreSQL through SQLAlchemy.

A work item is claimed with a lease. A worker that dies (even by SIGKILL) leaves its item
`running` with a lease that expires, after which any worker claims it again. Items with the same
ordering key (one pull request) are claimed one at a time, oldest first: an item recorded behind an
unfinished one of its key is `waiting`, and the oldest waiting item of a key becomes `pending` when
the one before it is done or dead. So a claim reads only claimable rows, through an index, and its
cost does not grow with the backlog; completions are written in the claim's transaction.
"""

import contextlib
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from bot import inbox_driver as driver
from bot import inbox_keys, inbox_schema, metrics
from bot.delivery import Delivery
from bot.inbox_writes import CoreStatements, CoreWrites, RecordingWrites, driver_transaction
from bot.payload_codec import UNREADABLE, pack, read_payload
from bot.sqlite_lock import WriterLock

T = TypeVar("T")

PENDING, RUNNING, DONE, DEAD, WAITING = "pending", "running", "done", "dead", "waiting"
UNFINISHED = (PENDING, RUNNING, WAITING)
# What a database that refuses a write raises: through SQLAlchemy, or through SQLite's own driver.
STORE_ERRORS = (sa.exc.DBAPIError, sqlite3.Error)
READ_ONLY = "orbit_read_only"  # an execution option: this connection's transactions only read
WAL_LIMIT_FRAMES = 16_384  # 64 MiB of 4 KiB pages

metadata = sa.MetaData()
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("delivery_id", sa.String(64), primary_key=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
)
work_items = sa.Table(
    "work_items",
    metadata,
    # 8 bytes: 2^31 ids run out in years of deliveries (SQLite's rowid is 8 bytes as INTEGER).
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id", sa.String(64), sa.ForeignKey("deliveries.delivery_id"), unique=True, nullable=False
    ),
    sa.Column("ordering_key", sa.String(300), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("available_at", sa.Float, nullable=False),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index("ix_work_items_queue", "status", "available_at", "id"),
    sa.Index("ix_work_items_key_status", "ordering_key", "status", "id"),
)


health = sa.Table(
    "health",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("checked_at", sa.Float, nullable=False),
)
# A row per ordering key with unfinished or unpruned work: its lock orders the key (PostgreSQL).
work_keys = sa.Table("work_keys", metadata, sa.Column("ordering_key", sa.String(300), primary_key=True))
# The ingest's readiness writes a table of its own: a role that may delete from the workers' table
# may also lock it (LOCK TABLE), and hold their readiness.
ingest_health = sa.Table(
    "ingest_health",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("checked_at", sa.Float, nullable=False),
)
LEASE_EXPIRED = "the lease expired {attempts} times: a worker died or hung while handling it"


# Statements built once: building one costs more than running it.
QUEUE_WORK = work_items.insert()
READ_DELIVERIES = sa.select(deliveries).where(
    deliveries.c.delivery_id.in_(sa.bindparam("ids", expanding=True))
)
START_ITEMS = (
    work_items.update()
    .where(work_items.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(status=RUNNING, attempts=work_items.c.attempts + 1, lease_expires_at=sa.bindparam("lease"))
)
SET_ITEM = work_items.update().where(work_items.c.id == sa.bindparam("item_id"))  # SET: the other params
# One probe per key, stopping at its first unfinished item: a key with a long backlog costs no more.
BUSY_KEY = (
    sa.select(sa.literal(True))
    .where(work_items.c.ordering_key == sa.bindparam("key"), work_items.c.status.in_(UNFINISHED))
    .limit(1)
)
_active = work_items.alias("active")
_NEXT_WAITING = (
    sa.select(sa.func.min(work_items.c.id))
    .where(work_items.c.ordering_key == sa.bindparam("key"), work_items.c.status == WAITING)
    .scalar_subquery()
)
# The oldest waiting item of a key becomes pending once the key has nothing pending or running:
# two lookups in the (ordering_key, status, id) index, run for every released key in one executemany.
RELEASE_NEXT = (
    work_items.update()
    .where(work_items.c.id == _NEXT_WAITING)
    .where(
        ~sa.exists().where(
            _active.c.ordering_key == sa.bindparam("key"),
            sa.or_(_active.c.status == PENDING, _active.c.status == RUNNING),  # no IN: executemany
        )
    )
    .values(status=PENDING)
)
FINISH_ITEMS = (
    work_items.update()
    .where(work_items.c.id.in_(sa.bindparam("ids", expanding=True)), work_items.c.status == RUNNING)
    .values(status=DONE, lease_expires_at=None, last_error=None)
    .returning(work_items.c.ordering_key)
)
PRUNE_BATCH = 100  # about 2 ms of the writer for deliveries of 30 KB
PRUNABLE = (
    sa.select(work_items.c.id, work_items.c.delivery_id, work_items.c.ordering_key)
    .where(work_items.c.status == DONE, work_items.c.available_at < sa.bindparam("before"))
    .order_by(work_items.c.available_at)
    .limit(sa.bindparam("limit"))
)
STRANDED_LIMIT = 1_000
STRANDED_PASSES = 100  # at most 100,000 keys a run: the next run goes on
# Keys whose oldest unfinished item waits with nothing ahead of it: a release that did not happen.
STRANDED_KEYS = (
    sa.select(work_items.c.ordering_key)
    .where(
        work_items.c.status == WAITING,
        ~sa.exists().where(
            _active.c.ordering_key == work_items.c.ordering_key, _active.c.status.in_((PENDING, RUNNING))
        ),
    )
    .distinct()
    .limit(STRANDED_LIMIT)
)
DELETE_ITEMS = work_items.delete().where(work_items.c.id.in_(sa.bindparam("ids", expanding=True)))
DELETE_DELIVERIES = deliveries.delete().where(
    deliveries.c.delivery_id.in_(sa.bindparam("ids", expanding=True))
)


@dataclass(frozen=True)
class WorkItem:
    """A claimed unit of work: the delivery to handle and how often it was tried."""

    id: int
    attempts: int
    delivery: Delivery


@dataclass(frozen=True)
class NewDelivery:
    """A verified delivery to record, with the key that orders it."""

    delivery: Delivery
    ordering_key: str
    body: bytes


def make_engine(url: str) -> Engine:
    """Create the engine; SQLite gets WAL, a busy timeout and immediate write transactions."""
    if url.startswith("sqlite"):
        in_memory = sa.engine.make_url(url).database in (None, "", ":memory:")
        # The most recently used connection still has its page cache; an older one rereads pages.
        # An in-memory database lives in its one connection, which every thread must then share.
        pool: dict[str, Any] = {"poolclass": StaticPool} if in_memory else {"pool_use_lifo": True}
        connect = {"timeout": 30, "isolation_level": None} | (
            {"check_same_thread": False} if in_memory else {}
        )
        engine = sa.create_engine(url, connect_args=connect, **pool)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit survives the process being killed (SIGKILL) without an fsync per commit.
            cursor.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints run out of band (Inbox.checkpoint), never inside an acknowledged write.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_FRAMES * 4096}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            # A write takes the writer at once (a read upgraded later may find it moved on and fail);
            # a read takes nothing, so it never waits for a writer, nor a writer for it.
            read_only = connection.get_execution_options().get(READ_ONLY, False)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    # No lock is waited for without end: another role (an ingest's) may take one and keep it.
    options = f"{sa.make_url(url).query.get('options', '')} -c lock_timeout={inbox_schema.LOCK_TIMEOUT_MS}"
    return sa.create_engine(
        url, pool_size=10, max_overflow=10, pool_pre_ping=True, connect_args={"options": options.strip()}
    )


def reading(engine: Engine) -> Connection:
    """Return a connection whose transactions only read: on SQLite they take no lock."""
    return engine.connect().execution_options(**{READ_ONLY: True})


def backoff(attempts: int, base: float = 2.0, cap: float = 600.0) -> float:
    """Return an exponential delay with full jitter for the given attempt count."""
    return random.uniform(0, min(cap, base * 2 ** max(attempts - 1, 0)))


class Inbox:
    """Deliveries and work items in one database."""

    def __init__(
        self,
        engine: Engine,
        lease_seconds: float = 300.0,
        max_attempts: int = 6,
        readiness: sa.Table = health,
    ) -> None:
        self.engine = engine
        self.readiness = readiness  # the table `check_writable` writes: the ingest has one of its own
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self._writer = WriterLock(engine.url.database) if self.writes_locally else contextlib.nullcontext()
        postgres = engine.dialect.name == "postgresql"
        insert_new = _insert_new(postgresql if postgres else sqlite)
        self._core_statements = CoreStatements(insert_new, BUSY_KEY, QUEUE_WORK)
        self._expired, self._pending = _claim_queries(skip_locked=postgres)
        # Replicas pruning at once take different rows instead of waiting on each other's.
        self._prunable = PRUNABLE.with_for_update(skip_locked=True) if postgres else PRUNABLE

    @property
    def writes_locally(self) -> bool:
        """Return whether a write is a short local file write (SQLite), not a network round trip."""
        return self.engine.dialect.name == "sqlite"

    def create_schema(self) -> None:
        """Create the inbox's tables that do not exist yet."""
        self.create_tables(metadata)

    def create_tables(self, tables: sa.MetaData) -> None:
        """Create those of `tables` that do not exist yet; replicas starting at once take turns.

        On PostgreSQL two replicas creating a table at once race (one fails on the catalogue's unique
        index), so they take turns (`inbox_schema`), and the inbox's `work_items` is hardened.
        """
        postgres = self.engine.dialect.name == "postgresql"

        def create(connection: Connection) -> None:
            if postgres:
                inbox_schema.in_turn(connection)
            tables.create_all(connection)
            for table in tables.sorted_tables:  # an index added since the table was made
                for index in table.indexes:
                    index.create(connection, checkfirst=True)
            if postgres and work_items.name in tables.tables:
                inbox_schema.harden(connection)

        if postgres:
            inbox_schema.retrying(self.engine, lambda: self.write(create))
        else:
            self.write(create)

    def checkpoint(self) -> bool:
        """Copy the SQLite write-ahead log into the database; return whether all of it was copied.

        The copy runs beside writers. Under a steady stream of writes it never catches up with the
        last frames and the log keeps growing; past `WAL_LIMIT_FRAMES` writers wait for one copy.
        A log copied whole starts over at the next write, cut back to that limit.
        """
        if not self.writes_locally:
            return True
        raw = self.engine.raw_connection()  # outside any transaction, as the pragma requires
        try:
            _, frames, copied = raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames > WAL_LIMIT_FRAMES:
                with self._writer:
                    _, frames, copied = raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            raw.close()
        return bool(frames == copied)

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with reading(self.engine) as connection:
            connection.execute(sa.text("SELECT 1"))

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a write transaction through the one writer and return its result."""
        with self._writer, self.engine.begin() as connection:
            return work(connection)

    def read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on a connection that only reads and return its result."""
        with reading(self.engine) as connection:
            return work(connection)

    def record(self, batch: list[NewDelivery]) -> list[bool | Exception]:
        """Store deliveries and queue their work in one transaction; False for one seen before.

        When the database refuses the batch (one delivery it cannot store), each delivery is stored
        on its own: the others are kept, and the one refused gets its error.
        """
        try:
            return list(self._record_together(batch))
        except STORE_ERRORS:
            if len(batch) == 1:
                raise
        return [self._record_alone(item) for item in batch]

    def _record_alone(self, item: NewDelivery) -> bool | Exception:
        try:
            return self._record_together([item])[0]
        except STORE_ERRORS as error:
            return error

    def _record_together(self, batch: list[NewDelivery]) -> list[bool]:
        now = time.time()
        first: dict[str, NewDelivery] = {}
        for item in batch:
            first.setdefault(item.delivery.delivery_id, item)
        rows = [_delivery_row(item, now) for item in first.values()]
        with self._writer, self._recording() as writes:
            inserted = writes.insert_new(rows)
            fresh = [item for delivery_id, item in first.items() if delivery_id in inserted]
            if fresh:
                busy = writes.busy_keys({item.ordering_key for item in fresh})
                queued = []
                for item in fresh:
                    queued.append(_work_row(item, now, WAITING if item.ordering_key in busy else PENDING))
                    busy.add(item.ordering_key)
                # In key order: on PostgreSQL the trigger locks each row's key, and two replicas
                # locking the same keys in different orders would deadlock (a stable sort: a key's
                # items keep the order they came in).
                writes.queue(sorted(queued, key=lambda row: str(row["ordering_key"])))
        # Only the first copy of a new delivery is new; a repeat inside the batch is a duplicate too.
        return [
            item is first[item.delivery.delivery_id] and item.delivery.delivery_id in inserted
            for item in batch
        ]

    @contextlib.contextmanager
    def _recording(self) -> Iterator[RecordingWrites]:
        """Yield the writes of one transaction: the SQLite driver's own, or SQLAlchemy Core's."""
        if self.writes_locally:
            with driver_transaction(self.engine, self._core_statements) as writes:
                yield writes
        else:
            with self.engine.begin() as connection:
                yield CoreWrites(connection, self._core_statements)

    def claim(self) -> WorkItem | None:
        """Take the oldest runnable item (see `claim_many`)."""
        items = self.claim_many(1)
        return items[0] if items else None

    def claim_many(self, limit: int, completed: list[int] | None = None) -> list[WorkItem]:
        """Mark the `completed` items done, then take up to `limit` runnable items, in one transaction.

        Items whose lease expired come first, then pending ones, oldest first. At most one item of an
        ordering key is unfinished and not waiting, so no claim skips over items of a busy key. An item
        whose stored payload cannot be read is dead-lettered.
        """
        done = list(completed or [])
        while True:
            found, items = self._claim_once(limit, done)
            done = []
            if items or not found:
                return items

    def _claim_once(self, limit: int, completed: list[int]) -> tuple[bool, list[WorkItem]]:
        now = time.time()
        with self._writer, self.engine.begin() as connection:
            if completed:
                self._finish(connection, completed)
            claimable = self._runnable(connection, now, limit) if limit > 0 else []
            if not claimable:
                return False, []
            exhausted = [row for row in claimable if self._exhausted(row)]
            started = [row for row in claimable if not self._exhausted(row)]
            ids = [row.delivery_id for row in started]
            stored = {
                found.delivery_id: found for found in driver.rows(connection, READ_DELIVERIES, {"ids": ids})
            }
            _bury(connection, [(row, LEASE_EXPIRED.format(attempts=row.attempts)) for row in exhausted])
            if started:
                lease = now + self.lease_seconds
                driver.rows(connection, START_ITEMS, {"ids": [row.id for row in started], "lease": lease})
        # Payloads are decoded once the transaction is over: the one writer is not held meanwhile.
        items, unreadable = [], []
        for row in started:
            payload = read_payload(stored[row.delivery_id].payload)
            if payload is None:
                unreadable.append(row)
                continue
            delivery = Delivery(stored[row.delivery_id].event, row.delivery_id, payload)
            items.append(WorkItem(row.id, row.attempts + 1, delivery))
        if unreadable:
            self.write(lambda connection: _bury(connection, [(row, UNREADABLE) for row in unreadable]))
        for label, count in (
            (metrics.LEASE_EXPIRED, len(exhausted)),
            (metrics.UNREADABLE_PAYLOAD, len(unreadable)),
        ):
            if count:
                metrics.DEAD_LETTERS.labels(label).inc(count)
        return True, items

    def _runnable(self, connection: Connection, now: float, limit: int) -> list[Any]:
        """Return up to `limit` claimable rows: expired leases first, then pending items by age."""
        found = list(driver.rows(connection, self._expired, {"now": now, "limit": limit}))
        if len(found) < limit:
            found += driver.rows(connection, self._pending, {"now": now, "limit": limit - len(found)})
        return found

    def _exhausted(self, row: Any) -> bool:
        """Return whether a claimed row's lease expired on its last allowed attempt: a dead letter."""
        return bool(row.status == RUNNING and row.attempts >= self.max_attempts)

    @staticmethod
    def _finish(connection: Connection, item_ids: list[int]) -> None:
        keys = {row.ordering_key for row in driver.rows(connection, FINISH_ITEMS, {"ids": item_ids})}
        _release_next(connection, keys)

    def extend(self, item_ids: list[int]) -> None:
        """Renew the leases of items still being handled, so that no other worker takes them."""
        with self._writer, self.engine.begin() as connection:
            connection.execute(
                work_items.update()
                .where(work_items.c.id.in_(item_ids), work_items.c.status == RUNNING)
                .values(lease_expires_at=time.time() + self.lease_seconds)
            )

    def check_writable(self) -> None:
        """Raise unless a write commits (a full disk or a read-only database fails it)."""
        with self._writer, self.engine.begin() as connection:
            connection.execute(self.readiness.delete())
            connection.execute(self.readiness.insert().values(id=1, checked_at=time.time()))

    def complete(self, item: WorkItem) -> None:
        """Mark an item done (workers pass theirs to the next claim instead: one transaction for both)."""
        self.complete_many([item.id])

    def complete_many(self, item_ids: list[int]) -> None:
        """Mark items done, and let the next item of each of their ordering keys be claimed."""
        if item_ids:
            with self._writer, self.engine.begin() as connection:
                self._finish(connection, item_ids)

    def fail(self, item: WorkItem, reason: str, temporary: bool, retry_after: float | None = None) -> str:
        """Schedule a retry with backoff, or dead-letter the item; return its new status."""
        if temporary and item.attempts < self.max_attempts:
            delay = max(retry_after or 0.0, backoff(item.attempts))
            self._set(
                item.id,
                status=PENDING,
                available_at=time.time() + delay,
                lease_expires_at=None,
                last_error=reason,
            )
            return PENDING
        with self._writer, self.engine.begin() as connection:
            values = {"status": DEAD, "lease_expires_at": None, "last_error": reason}
            key = connection.execute(
                SET_ITEM.returning(work_items.c.ordering_key), {"item_id": item.id, **values}
            )
            _release_next(connection, key.scalars())
        metrics.DEAD_LETTERS.labels(
            metrics.ATTEMPTS_EXHAUSTED if temporary else metrics.PERMANENT_ERROR
        ).inc()
        return DEAD

    def retry(self, item_id: int) -> bool:
        """Put a dead item back in the queue with fresh attempts; False if there is none."""
        with self._writer, self.engine.begin() as connection:
            # Waiting, then released like any other: its key may have a later item running by now.
            keys = connection.scalars(
                work_items.update()
                .where(work_items.c.id == item_id, work_items.c.status == DEAD)
                .values(status=WAITING, attempts=0, available_at=time.time())
                .returning(work_items.c.ordering_key)
            ).all()
            _release_next(connection, keys)
        return len(keys) == 1

    def list_items(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Return work items (newest first) with their event, for the CLI."""
        query = (
            sa.select(work_items, deliveries.c.event, deliveries.c.action)
            .join(deliveries, deliveries.c.delivery_id == work_items.c.delivery_id)
            .order_by(work_items.c.id.desc())
            .limit(limit)
        )
        if status:
            query = query.where(work_items.c.status == status)
        with reading(self.engine) as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def counts(self) -> dict[str, int]:
        """Return the number of work items in each status."""
        query = sa.select(work_items.c.status, sa.func.count()).group_by(work_items.c.status)
        with reading(self.engine) as connection:
            return {str(row[0]): int(row[1]) for row in connection.execute(query)}

    def oldest_pending(self, now: float) -> float | None:
        """Return when the oldest runnable pending item became runnable; None when none is.

        An item waiting out its retry's backoff is not counted: it waits on purpose, not for a worker.
        One lookup in the claim index.
        """
        query = sa.select(sa.func.min(work_items.c.available_at)).where(
            work_items.c.status == PENDING, work_items.c.available_at <= now
        )
        with reading(self.engine) as connection:
            oldest = connection.execute(query).scalar()
        return None if oldest is None else float(oldest)

    def release_stranded(self) -> int:
        """Let the oldest waiting item of each key with nothing ahead of it be claimed; return how many.

        A release skips no key, but one whose lock another session held may see a delivery recorded
        meanwhile left waiting (see `_release_next`); so may an item an ingest's role inserted as
        waiting. The workers run this now and then: a scan of the waiting items only.
        """
        released = 0
        for _ in range(STRANDED_PASSES):  # a page of keys at a time, until none is left
            with self._writer, self.engine.begin() as connection:
                keys = list(connection.scalars(STRANDED_KEYS))
                _release_next(connection, keys)
            released += len(keys)
            if len(keys) < STRANDED_LIMIT:
                break
        return released

    def prune_batch(self, before: float, limit: int = PRUNE_BATCH) -> int:
        """Delete up to `limit` done items (and their deliveries) that became due before `before`.

        Return how many were deleted. One short transaction: a range of the claim index, then deletes
        by primary key, so SQLite's writer is held for about 2 ms and ingest waits no longer.
        A delivery pruned here is no longer recognised as a duplicate if GitHub sends it again.
        """
        with self._writer, self.engine.begin() as connection:
            rows = connection.execute(self._prunable, {"before": before, "limit": limit}).all()
            if rows:
                connection.execute(DELETE_ITEMS, {"ids": [row.id for row in rows]})
                connection.execute(DELETE_DELIVERIES, {"ids": [row.delivery_id for row in rows]})
                if not self.writes_locally:
                    inbox_keys.forget_idle_keys(connection, sorted({row.ordering_key for row in rows}))
        return len(rows)

    def _set(self, item_id: int, **values: Any) -> None:
        with self._writer, self.engine.begin() as connection:
            connection.execute(SET_ITEM, {"item_id": item_id, **values})


def _claim_queries(skip_locked: bool) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """Return the claims of expired leases and of pending items, each one range of an index.

    A pending item whose ordering key has an earlier unfinished item is not taken: with `waiting`
    there is none, but a database written before `waiting` existed may hold such items.
    """
    now: sa.BindParameter[float] = sa.bindparam("now")
    limit: sa.BindParameter[int] = sa.bindparam("limit")
    earlier = work_items.alias("earlier")
    blocked = (
        sa.select(earlier.c.id)
        .where(earlier.c.ordering_key == work_items.c.ordering_key)
        .where(earlier.c.status.in_((PENDING, RUNNING)))
        .where(earlier.c.id < work_items.c.id)
    )
    columns = (work_items.c.id, work_items.c.delivery_id, work_items.c.attempts, work_items.c.status)
    expired = (
        sa.select(*columns, work_items.c.ordering_key)
        .where(work_items.c.status == RUNNING, work_items.c.lease_expires_at < now)
        .order_by(work_items.c.id)
        .limit(limit)
    )
    pending = (
        sa.select(*columns, work_items.c.ordering_key)
        .where(work_items.c.status == PENDING, work_items.c.available_at <= now, ~sa.exists(blocked))
        .order_by(work_items.c.available_at, work_items.c.id)
        .limit(limit)
    )
    if skip_locked:
        return (
            expired.with_for_update(skip_locked=True, of=work_items),
            pending.with_for_update(skip_locked=True, of=work_items),
        )
    return expired, pending


def _insert_new(dialect: Any) -> sa.Executable:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING the ids that were new (SQLite and PostgreSQL).

    Only the set of ids is used, so the rows go in one multi-row statement: asking for them in
    parameter order would make SQLAlchemy insert SQLite rows one statement at a time.
    """
    statement = dialect.insert(deliveries).on_conflict_do_nothing(index_elements=["delivery_id"])
    returning: sa.Executable = statement.returning(deliveries.c.delivery_id)
    return returning


def _delivery_row(item: NewDelivery, now: float) -> dict[str, Any]:
    return {
        "delivery_id": item.delivery.delivery_id,
        "event": item.delivery.event,
        "action": item.delivery.action,
        "received_at": now,
        "payload": pack(item.body),
    }


def _work_row(item: NewDelivery, now: float, status: str) -> dict[str, Any]:
    return {
        "delivery_id": item.delivery.delivery_id,
        "ordering_key": item.ordering_key,
        "status": status,
        "attempts": 0,
        "available_at": now,
    }


def _bury(connection: Connection, rows: list[tuple[Any, str]]) -> None:
    """Dead-letter claimed rows, each with its error, and let the next item of their keys be claimed."""
    for row, error in rows:
        connection.execute(
            SET_ITEM, {"item_id": row.id, "status": DEAD, "last_error": error, "lease_expires_at": None}
        )
    _release_next(connection, [row.ordering_key for row, _ in rows])


def _release_next(connection: Connection, keys: Iterable[str]) -> None:
    """Make the oldest waiting item of each key pending, once its key has nothing pending or running.

    Under the keys' locks on PostgreSQL where free (`inbox_keys`; SQLite has one writer). A key
    released without its lock stays in order (a claim skips an item with an older one pending or
    running); a delivery that the release then missed is released by `Inbox.release_stranded`.
    """
    if released := [{"key": key} for key in sorted(set(keys))]:
        if connection.dialect.name == "postgresql":
            inbox_keys.lock_keys(connection, [key["key"] for key in released])
        driver.run_many(connection, RELEASE_NEXT, released)

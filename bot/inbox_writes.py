"""The three writes that record deliveries, on SQLAlchemy Core (PostgreSQL) or the SQLite driver itself.

Recording is the acknowledgement's one database write. On SQLite, SQLAlchemy's execution of these
few small statements cost twice the database's own work (a one-delivery transaction: 0.32 ms
through Core, 0.13 ms through the driver), so SQLite runs the same statements, compiled once
(`bot.inbox_driver`), through `sqlite3` directly. `tests/bot/test_inbox.py` runs every recording
case on both databases.
"""

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bot.inbox_driver import prepared

Row = dict[str, Any]


class RecordingWrites(Protocol):
    """Inside one write transaction: store deliveries, probe keys, queue work items."""

    def insert_new(self, rows: list[Row]) -> set[str]:
        """Insert the delivery rows whose id is new; return those ids."""

    def busy_keys(self, keys: set[str]) -> set[str]:
        """Return those of `keys` that have an unfinished work item."""

    def queue(self, rows: list[Row]) -> None:
        """Insert work item rows."""


class CoreStatements(NamedTuple):
    """The statements of the writes: store deliveries, probe a key (SQLite), queue work items."""

    insert_new: sa.Executable
    busy_key: sa.Executable
    queue: sa.Executable


class CoreWrites:
    """The writes through SQLAlchemy Core, on a PostgreSQL connection inside a transaction.

    Whether a new item waits is decided by the database's trigger (`bot.inbox_schema`), under its
    key's lock, whoever inserts it: these writes take no lock and probe no key.
    """

    def __init__(self, connection: Connection, statements: CoreStatements) -> None:
        self._connection = connection
        self._statements = statements

    def insert_new(self, rows: list[Row]) -> set[str]:
        """Insert the delivery rows whose id is new, in one statement; return those ids."""
        return set(self._connection.scalars(self._statements.insert_new, rows)) if rows else set()

    def busy_keys(self, keys: set[str]) -> set[str]:
        """Return no key: the trigger sees each key's unfinished items as it inserts (see the class)."""
        return set()

    def queue(self, rows: list[Row]) -> None:
        """Insert work item rows in one executemany."""
        if rows:
            self._connection.execute(self._statements.queue, rows)


class DriverWrites:
    """The same writes as `CoreWrites`, the same statements, run through a `sqlite3` cursor."""

    def __init__(self, cursor: sqlite3.Cursor, statements: CoreStatements) -> None:
        self._cursor = cursor
        self._insert_new = prepared(statements.insert_new)
        self._busy_key = prepared(statements.busy_key)
        self._queue = prepared(statements.queue)

    def insert_new(self, rows: list[Row]) -> set[str]:
        """Insert the delivery rows whose id is new, one statement each; return those ids."""
        new = set()
        for row in rows:
            inserted = self._insert_new.on(self._cursor, row).fetchone()
            if inserted is not None:
                new.add(inserted[0])
        return new

    def busy_keys(self, keys: set[str]) -> set[str]:
        """Probe each key for its first unfinished item (SQLite has one writer: no locks to take)."""
        probe = self._busy_key
        return {key for key in sorted(keys) if probe.on(self._cursor, {"key": key}).fetchone() is not None}

    def queue(self, rows: list[Row]) -> None:
        """Insert work item rows in one executemany."""
        self._queue.many_on(self._cursor, rows)


@contextlib.contextmanager
def driver_transaction(engine: Engine, statements: CoreStatements) -> Iterator[DriverWrites]:
    """Yield the writes of one immediate SQLite transaction: committed at the end, rolled back on error.

    The connection comes from the engine's pool, so it has the engine's pragmas; the engine's
    connections run in autocommit mode, where the transaction is this BEGIN's.
    """
    connection = engine.raw_connection()
    try:
        cursor = cast(sqlite3.Cursor, connection.cursor())
        cursor.execute("BEGIN IMMEDIATE")
        yield DriverWrites(cursor, statements)
        cursor.execute("COMMIT")
    finally:
        connection.close()  # back to the pool, which rolls back a transaction left open by an error

"""Running the inbox's Core statements on SQLite through the driver, inside a Core transaction.

The claim's transaction holds SQLite's one writer: while it runs, an acknowledgement (in this
process or in an ingest process) waits for it. SQLAlchemy's execution of its six small statements
took longer than SQLite's own work (a claim of 7 items with 7 completions held the writer 0.75 ms,
0.45 ms of it in SQLAlchemy), so on SQLite each statement is compiled once, as SQLAlchemy would
send it, and run through the transaction's own `sqlite3` connection. PostgreSQL, which has no
single writer, keeps SQLAlchemy's execution.
"""

import sqlite3
from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.compiler import SQLCompiler

_SQLITE = sqlite.dialect()
Params = Mapping[str, Any]


class Prepared:
    """A Core statement compiled once for SQLite: its text, and the order of its parameters."""

    def __init__(self, statement: sa.Executable) -> None:
        compiled = cast(SQLCompiler, cast(sa.ClauseElement, statement).compile(dialect=_SQLITE))
        self._sql = compiled.string
        self._names = list(compiled.positiontup or ())
        self._defaults = {name: compiled.binds[name].value for name in self._names}  # literals in it
        self._expanding = {name for name in self._names if compiled.binds[name].expanding}
        self._row: type | None = None

    def bind(self, params: Params) -> tuple[str, list[Any]]:
        """Return the text with each list parameter's placeholders, and the values in their order."""
        values = {**self._defaults, **params}
        sql, args = self._sql, []
        for name in self._names:
            value = values[name]
            if name in self._expanding:
                placeholders = ", ".join("?" * len(value)) or "NULL"  # IN (NULL) matches nothing
                sql = sql.replace(f"__[POSTCOMPILE_{name}]", placeholders, 1)
                args.extend(value)
            else:
                args.append(value)
        return sql, args

    def on(self, cursor: sqlite3.Cursor, params: Params) -> sqlite3.Cursor:
        """Run the statement on a cursor; return the cursor, to fetch from."""
        return cursor.execute(*self.bind(params))

    def many_on(self, cursor: sqlite3.Cursor, params: Sequence[Params]) -> None:
        """Run the statement once for each parameter set (none of them lists) on a cursor."""
        cursor.executemany(self._sql, [self.bind(one)[1] for one in params])

    def rows(self, connection: Connection, params: Params) -> list[Any]:
        """Run the statement in the connection's transaction; return its rows, fields named as Core's."""
        cursor = _cursor(connection)
        try:
            found = self.on(cursor, params).fetchall()
            if cursor.description is None:
                return []
            if self._row is None:
                self._row = namedtuple("Row", [column[0] for column in cursor.description])  # type: ignore[misc]
            return [self._row(*row) for row in found]
        finally:
            cursor.close()

    def many(self, connection: Connection, params: Sequence[Params]) -> None:
        """Run the statement once for each parameter set (none of them lists)."""
        cursor = _cursor(connection)
        try:
            self.many_on(cursor, params)
        finally:
            cursor.close()


def _cursor(connection: Connection) -> sqlite3.Cursor:
    """Return a cursor of the `sqlite3` connection under a Core connection: in its transaction."""
    return cast(sqlite3.Cursor, connection.connection.dbapi_connection.cursor())  # type: ignore[union-attr]


_prepared: dict[int, tuple[sa.Executable, Prepared]] = {}


def prepared(statement: sa.Executable) -> Prepared:
    """Return the statement compiled for SQLite, compiling it on first use."""
    entry = _prepared.get(id(statement))
    if entry is None or entry[0] is not statement:
        entry = _prepared[id(statement)] = (statement, Prepared(statement))
    return entry[1]


def rows(connection: Connection, statement: sa.Executable, params: Params | None = None) -> Sequence[Any]:
    """Run a statement in the connection's transaction and return its rows, on either database."""
    if connection.dialect.name == "sqlite":
        return prepared(statement).rows(connection, params or {})
    result = connection.execute(statement, dict(params or {}))
    return result.all() if result.returns_rows else []


def run_many(connection: Connection, statement: sa.Executable, params: Sequence[Params]) -> None:
    """Run a statement once for each parameter set, on either database."""
    if not params:
        return
    if connection.dialect.name == "sqlite":
        prepared(statement).many(connection, params)
    else:
        connection.execute(statement, [dict(one) for one in params])

"""The configured database as the command line meets it: checked in one line, never created by a reader.

`orbit serve` creates the inbox where there is none; `orbit inbox list` and `retry` only read (or
change a row of) the one the bot made, so they open it without creating a file or a table. Each
failure names `ORBIT_DATABASE_URL`, shows the URL without its password and says what to do: a URL
SQLAlchemy cannot use is a `SettingsError`, a database that cannot be reached or holds no inbox a
`DatabaseError`.
"""

import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from bot.inbox import make_engine, work_items
from bot.settings import SettingsError

VARIABLE = "ORBIT_DATABASE_URL"
EXAMPLES = "sqlite:///orbit.db (one replica) or postgresql+psycopg://USER@HOST/DATABASE (docs/install.md)"
CONNECT_TIMEOUT_SECONDS = 10  # PostgreSQL: a host that drops packets fails in seconds, not minutes


class DatabaseError(RuntimeError):
    """The configured database cannot be used; the message names the variable and the fix."""


def parse(url: str) -> URL:
    """Return the parsed URL; raise `SettingsError` if SQLAlchemy cannot read it or has no driver for it."""
    try:
        parsed = sa.make_url(url)
    except ArgumentError:
        raise SettingsError(f"{VARIABLE} is not a database URL; give one such as {EXAMPLES}") from None
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise SettingsError(
            f"{VARIABLE} names a database SQLAlchemy has no driver for ({parsed.drivername}://);"
            f" give one such as {EXAMPLES}"
        ) from None
    return parsed


def shown(url: URL) -> str:
    """Return the URL as it may be printed: without its password."""
    return url.render_as_string(hide_password=True)


def ping(url: str) -> None:
    """Connect once, or raise `DatabaseError` saying why not; a SQLite file yet to be made is not made."""
    parsed = parse(url)
    if parsed.get_backend_name() == "sqlite" and not _sqlite_file_exists(parsed):
        _check_sqlite_folder(parsed)
        return
    postgres = parsed.get_backend_name() == "postgresql"
    engine = sa.create_engine(
        parsed, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS} if postgres else {}
    )
    try:
        sa.inspect(engine).has_table(work_items.name)  # reads the catalogue: a file that is no database fails
    except DBAPIError as error:
        raise DatabaseError(f"{VARIABLE}: cannot connect to {shown(parsed)}: {_reason(error)}") from None
    finally:
        engine.dispose()


def open_existing(url: str) -> Engine:
    """Return an engine on the inbox the bot made at `url`; raise `DatabaseError` if there is none.

    Nothing is created: a SQLite file that does not exist is reported, not made.
    """
    parsed = parse(url)
    if parsed.get_backend_name() == "sqlite" and not _sqlite_file_exists(parsed):
        raise DatabaseError(f"no inbox at {shown(parsed)} ({VARIABLE}): the bot has not run here")
    engine = make_engine(url)
    try:
        present = sa.inspect(engine).has_table(work_items.name)
    except DBAPIError as error:
        engine.dispose()
        raise DatabaseError(f"{VARIABLE}: cannot connect to {shown(parsed)}: {_reason(error)}") from None
    if not present:
        engine.dispose()
        raise DatabaseError(
            f"no inbox at {shown(parsed)} ({VARIABLE}): the database has no inbox tables"
            " (`orbit serve` creates them when it starts)"
        )
    return engine


def _sqlite_file_exists(url: URL) -> bool:
    """Return whether the SQLite database is a file that exists (an in-memory one never does here)."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return False
    return Path(database.removeprefix("file:").split("?", 1)[0]).is_file()


def _check_sqlite_folder(url: URL) -> None:
    """Raise `DatabaseError` unless the bot can create the SQLite file: its folder exists and is writable."""
    folder = Path(url.database or "").parent
    if not folder.is_dir():
        raise DatabaseError(f"{VARIABLE}: cannot create {shown(url)}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DatabaseError(f"{VARIABLE}: cannot create {shown(url)}: the folder {folder} is not writable")


def _reason(error: DBAPIError) -> str:
    """Return the driver's first line about the failure, without SQLAlchemy's statement and links."""
    original = error.orig if error.orig is not None else error
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__

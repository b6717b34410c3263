"""The inbox's database: reachable, and holding the tables `orbit serve` creates. Creates nothing."""

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from bot import inbox, redelivery
from bot.doctor.check import Check, failed, passed

NAME = "database"
CREATE = "run `orbit serve` once: it creates them"
CONNECT_SECONDS = 5


def database_check(url: str, redelivers: bool) -> Check:
    """Return whether the database at `url` is reachable and has every table orbit uses."""
    try:
        parsed = sa.make_url(url)
    except ArgumentError:
        return failed(
            NAME,
            "ORBIT_DATABASE_URL is not a database URL",
            "set it to sqlite:///orbit.db or postgresql+psycopg://USER@HOST/DB",
        )
    shown = parsed.render_as_string(hide_password=True)
    missing_file = _missing_sqlite_file(parsed)
    if missing_file is not None:
        return failed(NAME, f"no database at {shown} ({missing_file})", CREATE)
    try:
        engine = _engine(parsed)
    except (NoSuchModuleError, ModuleNotFoundError) as error:
        return failed(NAME, f"no driver for {shown}: {error}", "install the driver the URL names")
    try:
        absent = _missing_tables(engine, redelivers)
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
        return failed(NAME, f"cannot reach {shown}: {reason}", "check ORBIT_DATABASE_URL and the server")
    finally:
        engine.dispose()
    if absent:
        return failed(NAME, f"{shown} lacks {', '.join(absent)}", CREATE)
    return passed(NAME, f"{shown}: every table orbit uses is there")


def _missing_sqlite_file(url: URL) -> str | None:
    """Return why a SQLite URL names no database file yet (connecting would create one), or None."""
    if url.get_backend_name() != "sqlite":
        return None
    if url.database in (None, "", ":memory:"):
        return "an in-memory database holds nothing between runs"
    if not Path(url.database).is_file():
        return "the file does not exist"
    return None


def _engine(url: URL) -> Engine:
    connect = {"connect_timeout": CONNECT_SECONDS} if url.get_backend_name() == "postgresql" else {}
    return sa.create_engine(url, connect_args=connect)


def _missing_tables(engine: Engine, redelivers: bool) -> list[str]:
    """Return the tables, and the columns of existing tables, that the database lacks."""
    wanted = [*inbox.metadata.sorted_tables]
    if redelivers:
        wanted += redelivery.metadata.sorted_tables
    inspector = sa.inspect(engine)
    present = set(inspector.get_table_names())
    absent = []
    for table in wanted:
        if table.name not in present:
            absent.append(f"table {table.name}")
            continue
        columns = {column["name"] for column in inspector.get_columns(table.name)}
        absent += [f"column {table.name}.{c.name}" for c in table.columns if c.name not in columns]
    return absent

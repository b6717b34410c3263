"""What a PostgreSQL role of the ingest alone may do: store deliveries, queue their work, check health.

An ingest runs apart from the workers (the `ha` overlay) so that the process facing the internet holds
nothing that acts: with the workers' own role it could still write what they trust (a run recorded as
orbit's, a claim). The workers grant these, and only these, to the ingest's role at every start, so a
table an upgrade adds is granted too; the ingest never creates tables on PostgreSQL (see `app.py`).

It reads only the columns its writes need (no payload, no error), and what it inserts into
`work_items` is made a new item by a trigger (`inbox_schema`). The workers refuse to grant a role
that would hold more than this, before granting and after (`ingest_role`), and an ingest refuses to
start with a role that may change work items: a Secret made with the workers' URL.
"""

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bot.inbox import deliveries, health, ingest_health, work_items
from bot.inbox_schema import in_turn, retrying
from bot.ingest_role import check_ingest_role, excess_rights, hardening_gaps
from bot.settings import SettingsError

log = logging.getLogger(__name__)

# Table -> privileges, a column list where it reads: insert a delivery and learn whether it was new;
# probe a key for unfinished work and queue an item (its id is returned); its own readiness row.
INGEST_PRIVILEGES = {
    deliveries.name: ("SELECT (delivery_id)", "INSERT"),
    work_items.name: ("SELECT (id, ordering_key, status)", "INSERT"),
    ingest_health.name: ("SELECT", "INSERT", "DELETE"),
}
UNGRANTED = (health.name,)  # granted once (before the ingest had a table of its own): revoked


def granted() -> set[tuple[str, str]]:
    """Return what `INGEST_PRIVILEGES` grants, one (table, privilege) each: `SELECT (c)` per column."""
    rights = set()
    for table, privileges in INGEST_PRIVILEGES.items():
        for privilege in privileges:
            kind, _, columns = privilege.partition(" (")
            names = columns.rstrip(")").split(", ") if columns else []
            rights |= {(table, f"{kind} ({name})") for name in names} if names else {(table, kind)}
    return rights


def grant_ingest(engine: Engine, role: str) -> None:
    """Grant `role` what the ingest does on the inbox's tables and nothing else (idempotent)."""
    check_ingest_role(engine, role)

    def grant() -> tuple[list[str], list[str]]:
        with engine.begin() as connection:
            # Two workers granting at once fail one ("tuple concurrently updated"): take turns.
            in_turn(connection)
            _grant(connection, role)
            return excess_rights(connection, role, granted()), hardening_gaps(connection, role)

    excess, gaps = retrying(engine, grant)
    if excess:
        raise SettingsError(
            f"ORBIT_INGEST_DATABASE_ROLE names {role}, which holds more than orbit grants it, through"
            f" PUBLIC or a role it is a member of: {', '.join(excess)}; revoke them (SECURITY.md)"
        )
    for gap in gaps:
        log.warning("the ingest's database role %s %s (docs/install.md, step 2)", role, gap)


def _grant(connection: Connection, role: str) -> None:
    quote = connection.dialect.identifier_preparer.quote
    tables = [*INGEST_PRIVILEGES, *UNGRANTED]
    # What was granted before (whole tables, once) goes, and with it each column's grants.
    connection.execute(sa.text(f"REVOKE ALL ON {', '.join(map(quote, tables))} FROM {quote(role)}"))
    for table, privileges in INGEST_PRIVILEGES.items():
        connection.execute(sa.text(f"GRANT {', '.join(privileges)} ON {quote(table)} TO {quote(role)}"))
    sequence = connection.scalar(
        sa.text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": work_items.name}
    )
    connection.execute(sa.text(f"GRANT USAGE ON SEQUENCE {sequence} TO {quote(role)}"))

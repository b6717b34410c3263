"""What a PostgreSQL role of the ingest alone may do: store deliveries, queue their work, check health.

An ingest runs apart from the workers (the `ha` overlay) so that the process facing the internet holds
nothing that acts: with the workers' own role it could still write what they trust (a run recorded as
orbit's, a claim). The workers grant these, and only these, to the ingest's role at every start, so a
table an upgrade adds is granted too; the ingest never creates tables on PostgreSQL (see `app.py`).
"""

import re

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.inbox import deliveries, health, work_items
from bot.settings import POSTGRES_ROLE, SettingsError

# Table -> privileges: record (insert new, read back what was new, the keys still busy), readiness.
INGEST_PRIVILEGES = {
    deliveries.name: ("SELECT", "INSERT"),
    work_items.name: ("SELECT", "INSERT"),
    health.name: ("SELECT", "INSERT", "DELETE"),
}


def check_ingest_role(engine: Engine, role: str) -> None:
    """Raise `SettingsError` unless `role` is a role of the database's server."""
    if not re.fullmatch(POSTGRES_ROLE, role):
        raise ValueError(f"not a PostgreSQL role name: {role!r}")
    with engine.connect() as connection:
        found = connection.scalar(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role})
    if found is None:
        raise SettingsError(
            f"ORBIT_INGEST_DATABASE_ROLE: the database has no role {role}; create it as docs/install.md"
            f" says (step 2): CREATE ROLE {role} LOGIN PASSWORD '...'"
        )


def grant_ingest(engine: Engine, role: str) -> None:
    """Grant `role` what the ingest does on the inbox's tables and nothing else (idempotent)."""
    check_ingest_role(engine, role)
    with engine.begin() as connection:
        # Two workers granting at once fail one ("tuple concurrently updated"): take turns, as in
        # `Inbox.create_tables`, whose lock this is.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('orbit schema'))"))
        quote = connection.dialect.identifier_preparer.quote
        for table, privileges in INGEST_PRIVILEGES.items():
            connection.execute(sa.text(f"GRANT {', '.join(privileges)} ON {quote(table)} TO {quote(role)}"))
        sequence = connection.scalar(
            sa.text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": work_items.name}
        )
        connection.execute(sa.text(f"GRANT USAGE ON SEQUENCE {sequence} TO {quote(role)}"))

"""What a PostgreSQL role of the ingest alone may do: store deliveries, queue their work, check health.

An ingest runs apart from the workers (the `ha` overlay) so that the process facing the internet holds
nothing that acts: with the workers' own role it could still write what they trust (a run recorded as
orbit's, a claim). The workers grant these, and only these, to the ingest's role at every start, so a
table an upgrade adds is granted too; the ingest never creates tables on PostgreSQL (see `app.py`).

It reads only the columns its writes need (no payload, no error), and what it inserts into
`work_items` is made a new item by a trigger (`inbox_schema`). The workers refuse to grant a role
that would hold more than this (their own, a superuser, one of their members), and an ingest refuses
to start with a role that may change work items: a Secret made with the workers' URL.
"""

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bot.inbox import Inbox, deliveries, health, ingest_health, work_items
from bot.inbox_schema import in_turn, retrying
from bot.settings import POSTGRES_ROLE, SettingsError

# Table -> privileges, a column list where it reads: insert a delivery and learn whether it was new;
# probe a key for unfinished work and queue an item (its id is returned); its own readiness row.
INGEST_PRIVILEGES = {
    deliveries.name: ("SELECT (delivery_id)", "INSERT"),
    work_items.name: ("SELECT (id, ordering_key, status)", "INSERT"),
    ingest_health.name: ("SELECT", "INSERT", "DELETE"),
}
UNGRANTED = (health.name,)  # granted once (before the ingest had a table of its own): revoked
OWN_ROLE = (
    "ORBIT_INGEST_DATABASE_ROLE names {role}, {what}: give the ingest a role of its own"
    " (docs/install.md, step 2)"
)


def check_ingest_role(engine: Engine, role: str) -> None:
    """Raise `SettingsError` unless `role` is a role of the server that holds nothing of the workers'."""
    if not re.fullmatch(POSTGRES_ROLE, role):
        raise ValueError(f"not a PostgreSQL role name: {role!r}")
    with engine.connect() as connection:
        found = connection.execute(
            sa.text(
                "SELECT rolsuper, rolname = current_user AS ours,"
                " pg_has_role(rolname, current_user, 'MEMBER') AS member FROM pg_roles WHERE rolname = :role"
            ),
            {"role": role},
        ).first()
    if found is None:
        raise SettingsError(
            f"ORBIT_INGEST_DATABASE_ROLE: the database has no role {role}; create it as docs/install.md"
            f" says (step 2): CREATE ROLE {role} LOGIN PASSWORD '...'"
        )
    for refused, what in (
        (found.ours, "the workers' own role"),
        (found.rolsuper, "a superuser"),
        (found.member, "a member of the workers' role, with all its rights"),
    ):
        if refused:
            raise SettingsError(OWN_ROLE.format(role=role, what=what))


def grant_ingest(engine: Engine, role: str) -> None:
    """Grant `role` what the ingest does on the inbox's tables and nothing else (idempotent)."""
    check_ingest_role(engine, role)

    def grant() -> None:
        with engine.begin() as connection:
            # Two workers granting at once fail one ("tuple concurrently updated"): take turns.
            in_turn(connection)
            _grant(connection, role)

    retrying(engine, grant)


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


def check_own_rights(engine: Engine) -> None:
    """Raise `SettingsError` if the ingest's database role may change or remove work items.

    Such a role is the workers' (or a superuser): code that runs in the ingest could then write what
    the workers trust. Before the workers have made the tables there is nothing to check yet.
    """
    with engine.connect() as connection:
        found = connection.execute(
            sa.text(
                "SELECT current_user AS role, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
                " AS superuser, to_regclass('work_items') IS NOT NULL AND (has_table_privilege('work_items',"
                " 'UPDATE') OR has_table_privilege('work_items', 'DELETE')) AS changes_work"
            )
        ).one()
    if found.superuser or found.changes_work:
        raise SettingsError(
            f"the ingest's ORBIT_DATABASE_URL connects as {found.role}, which may change work items"
            " (the workers' role or a superuser): give the ingest a role of its own, granted by the"
            " workers' ORBIT_INGEST_DATABASE_ROLE (docs/install.md, step 2)"
        )


class IngestInbox(Inbox):
    """An ingest's inbox on PostgreSQL: ready only while its role may not change work items.

    Checked at every readiness probe, not only at start: before the workers have made the tables
    there is nothing to check.
    """

    def check_writable(self) -> None:
        """Raise unless the role holds only the ingest's rights and a write commits."""
        check_own_rights(self.engine)
        super().check_writable()

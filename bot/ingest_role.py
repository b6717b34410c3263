"""Checks of the ingest's PostgreSQL role: before the workers grant it, after, and from the ingest.

The workers refuse a role that holds more than the ingest's grants (their own, a superuser, one that
can make roles or read the server's data), and say what the installer should still take from it:
the advisory-lock functions and temporary tables (with either it can fill the server's lock table),
an unlimited number of connections, and prepared transactions (a server setting). An ingest refuses
to run as a role that may change work items.
"""

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bot.inbox import Inbox
from bot.settings import POSTGRES_ROLE, SettingsError

OWN_ROLE = (
    "ORBIT_INGEST_DATABASE_ROLE names {role}, {what}: give the ingest a role of its own"
    " (docs/install.md, step 2)"
)
ROLE = sa.text(
    "SELECT rolname = current_user AS ours, rolsuper, pg_has_role(rolname, current_user, 'MEMBER')"
    " AS member, rolcreaterole, rolreplication, rolbypassrls,"
    " coalesce(pg_has_role(rolname, to_regrole('pg_read_all_data'), 'MEMBER'), false) AS reads_all,"
    " coalesce(pg_has_role(rolname, to_regrole('pg_write_all_data'), 'MEMBER'), false) AS writes_all,"
    " rolconnlimit FROM pg_roles WHERE rolname = :role"
)
REFUSED = {
    "ours": "the workers' own role",
    "rolsuper": "a superuser",
    "member": "a member of the workers' role, with all its rights",
    "rolcreaterole": "a role that may make roles (CREATEROLE), and so join the workers'",
    "rolreplication": "a replication role, which may read every row",
    "rolbypassrls": "a role that bypasses row security (BYPASSRLS)",
    "reads_all": "a member of pg_read_all_data",
    "writes_all": "a member of pg_write_all_data",
}
TABLE_RIGHTS = sa.text(
    "SELECT c.relname, p.privilege FROM pg_class c, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE',"
    " 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(privilege)"
    " WHERE c.relnamespace = to_regnamespace(current_schema()) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
    " AND has_table_privilege(:role, c.oid, p.privilege)"
)
COLUMN_READS = sa.text(
    "SELECT c.relname, a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
    " WHERE c.relnamespace = to_regnamespace(current_schema()) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
    " AND a.attnum > 0 AND NOT a.attisdropped AND NOT has_table_privilege(:role, c.oid, 'SELECT')"
    " AND has_column_privilege(:role, c.oid, a.attnum, 'SELECT')"
)
# Where the role could create what the workers' statements resolve (an operator `=` for varchar in a
# schema they search runs as them), or a schema they search first ("$user").
CREATES = sa.text(
    "SELECT 'CREATE on schema ' || n.nspname AS what FROM pg_namespace n"
    " WHERE n.nspname = ANY(current_schemas(false)) AND has_schema_privilege(:role, n.oid, 'CREATE')"
    " UNION ALL SELECT 'CREATE on database ' || current_database()"
    " WHERE has_database_privilege(:role, current_database(), 'CREATE')"
)
GAPS = sa.text(
    "SELECT has_function_privilege(:role, 'pg_advisory_lock(bigint)', 'EXECUTE') AS advisory,"
    " has_database_privilege(:role, current_database(), 'TEMPORARY') AS temporary,"
    " (SELECT rolconnlimit FROM pg_roles WHERE rolname = :role) AS connections,"
    " current_setting('max_prepared_transactions')::int AS prepared"
)
OWN_RIGHTS = sa.text(
    "SELECT current_user AS role, rolsuper OR rolcreaterole AS powerful,"
    " to_regclass('work_items') IS NOT NULL AND (has_table_privilege('work_items', 'UPDATE')"
    " OR has_table_privilege('work_items', 'DELETE')) AS changes_work"
    " FROM pg_roles WHERE rolname = current_user"
)


def check_ingest_role(engine: Engine, role: str) -> None:
    """Raise `SettingsError` unless `role` is a role of the server that holds nothing of the workers'."""
    if not re.fullmatch(POSTGRES_ROLE, role):
        raise ValueError(f"not a PostgreSQL role name: {role!r}")
    with engine.connect() as connection:
        found = connection.execute(ROLE, {"role": role}).mappings().first()
    if found is None:
        raise SettingsError(
            f"ORBIT_INGEST_DATABASE_ROLE: the database has no role {role}; create it as docs/install.md"
            f" says (step 2): CREATE ROLE {role} LOGIN PASSWORD '...'"
        )
    for flag, what in REFUSED.items():
        if found[flag]:
            raise SettingsError(OWN_ROLE.format(role=role, what=what))


def excess_rights(connection: Connection, role: str, allowed: set[tuple[str, str]]) -> list[str]:
    """Return what `role` may do in the inbox's schema beyond `allowed`, as `PRIVILEGE on TABLE`.

    Read as the server decides it: grants to PUBLIC and to roles it is a member of count. CREATE in a
    schema the workers search, or on the database, counts too: with it the role can make an operator
    or a function their statements pick, which then runs with their rights.
    """
    held = {(row.relname, row.privilege) for row in connection.execute(TABLE_RIGHTS, {"role": role})}
    reads = connection.execute(COLUMN_READS, {"role": role})
    held |= {(row.relname, f"SELECT ({row.attname})") for row in reads}
    creates = list(connection.scalars(CREATES, {"role": role}))
    return [f"{privilege} on {table}" for table, privilege in sorted(held - allowed)] + creates


def hardening_gaps(connection: Connection, role: str) -> list[str]:
    """Return what the installer should still take from `role`, each as what it allows."""
    found = connection.execute(GAPS, {"role": role}).one()
    gaps = []
    if found.advisory:
        gaps.append("may take advisory locks: enough of them fill the server's lock table")
    if found.temporary:
        gaps.append("may create temporary tables: enough of them fill the server's lock table")
    if found.connections < 0:
        gaps.append("has no connection limit: it may take every connection the workers need")
    if found.prepared > 0:
        gaps.append(
            "may prepare transactions (the server's max_prepared_transactions is not 0): their locks"
            " outlive its sessions and the server's restarts"
        )
    return gaps


def check_own_rights(engine: Engine) -> None:
    """Raise `SettingsError` if the ingest's database role may change or remove work items.

    Such a role is the workers' (or a superuser): code that runs in the ingest could then write what
    the workers trust. Before the workers have made the tables there is nothing to check yet.
    """
    with engine.connect() as connection:
        found = connection.execute(OWN_RIGHTS).one()
    if found.powerful or found.changes_work:
        raise SettingsError(
            f"the ingest's ORBIT_DATABASE_URL connects as {found.role}, which may change work items"
            " (the workers' role, a superuser or one that makes roles): give the ingest a role of its"
            " own, granted by the workers' ORBIT_INGEST_DATABASE_ROLE (docs/install.md, step 2)"
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

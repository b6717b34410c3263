"""Making the inbox's schema on PostgreSQL, where another role may share the database (the ingest's).

Replicas of the workers start together and race on the catalogue (a table created twice, a GRANT
given twice: "tuple concurrently updated"), so they take turns under an advisory lock. Any role can
take an advisory lock, though, an ingest's too, and hold it: a worker waits for it a few seconds
and then goes on without it, retrying a race it loses. Every other lock a worker waits for is bounded
by `LOCK_TIMEOUT_MS` (`make_engine`); a lock held past it at start names the sessions holding locks.

Whoever inserts into `work_items`, a trigger makes the row a new item: under its key's row lock, with
the next id, waiting if its key has unfinished work and else pending, never tried, with no lease, due
now (the database's clock). So an item the ingest's role writes can neither look taken by a worker,
nor run beside or ahead of its key's earlier items, nor be due in a year and block its key (a
production rollout) behind it. The recorders on PostgreSQL leave the key's lock and its probe to it.
"""

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

T = TypeVar("T")
log = logging.getLogger(__name__)

LOCK_TIMEOUT_MS = 10_000  # the longest a worker's statement waits for a lock on PostgreSQL
SCHEMA_LOCK = "hashtext('orbit schema')"
SCHEMA_LOCK_WAIT_SECONDS = 5.0
RACE_ATTEMPTS = 8
# What losing a race with another replica raises: a catalogue row inserted or updated twice.
RACES = ("23505", "XX000", "42P07", "42710", "40P01")

# Run as its owner, the workers' role (SECURITY DEFINER): the key's row is locked and the id taken with
# the workers' rights, which the ingest's role lacks on `work_keys` and the sequence's setval. It never
# waits on a key's row beyond a moment: a row another session holds (a worker releasing the key's
# next item, or a role that keeps it) makes the new item wait, which keeps the key's order, and the
# workers' stranded pass starts it if nothing ahead of it does. A key of one delivery alone
# (`delivery:ID`) orders nothing and takes no row.
NEW_ITEM_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.orbit_new_work_item() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms' AS $$
DECLARE
  held_elsewhere boolean := false;
BEGIN
  -- A later snapshot would not see the key's items recorded since: it could run ahead of them.
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'work items are recorded in READ COMMITTED transactions only';
  END IF;
  IF NEW.ordering_key NOT LIKE 'delivery:%' THEN
    PERFORM 1 FROM {schema}.work_keys WHERE ordering_key = NEW.ordering_key FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
      IF EXISTS (SELECT 1 FROM {schema}.work_keys WHERE ordering_key = NEW.ordering_key) THEN
        held_elsewhere := true;
      ELSE
        BEGIN  -- a new key: another session inserting it too is waited for 50 ms at most
          INSERT INTO {schema}.work_keys (ordering_key) VALUES (NEW.ordering_key);
        EXCEPTION WHEN unique_violation OR lock_not_available THEN
          held_elsewhere := true;
        END;
      END IF;
    END IF;
  END IF;
  NEW.id := nextval('{sequence}'::regclass);
  NEW.status := CASE WHEN held_elsewhere OR EXISTS (
    SELECT 1 FROM {schema}.work_items
    WHERE ordering_key = NEW.ordering_key AND status IN ('pending', 'running', 'waiting')
  ) THEN 'waiting' ELSE 'pending' END;
  NEW.attempts := 0;
  NEW.lease_expires_at := NULL;
  NEW.last_error := NULL;
  NEW.available_at := EXTRACT(EPOCH FROM clock_timestamp());
  RETURN NEW;
END $$
"""
NEW_ITEM_TRIGGER = (
    "CREATE TRIGGER orbit_new_work_item BEFORE INSERT ON work_items"
    " FOR EACH ROW EXECUTE FUNCTION {schema}.orbit_new_work_item()"
)


class SchemaLockError(RuntimeError):
    """A lock the workers need at start was held too long; the message names who holds locks."""


def in_turn(connection: Connection) -> bool:
    """Take the schema's advisory lock for this transaction, waiting a few seconds at most.

    Return whether it was taken. Without it the caller goes on, and `retrying` repeats a lost race.
    """
    deadline = time.monotonic() + SCHEMA_LOCK_WAIT_SECONDS
    while not connection.scalar(sa.text(f"SELECT pg_try_advisory_xact_lock({SCHEMA_LOCK})")):
        if time.monotonic() > deadline:
            log.warning(
                "orbit's schema lock is held by %s: going on without it", holders(connection) or "no one now"
            )
            return False
        time.sleep(0.05)
    return True


def retrying(engine: Engine, work: Callable[[], T]) -> T:
    """Run `work` (one transaction), again when it lost a race with another replica's schema change.

    A lock held past `LOCK_TIMEOUT_MS` raises `SchemaLockError` naming the sessions holding locks.
    """
    for attempt in range(1, RACE_ATTEMPTS + 1):
        try:
            return work()
        except sa.exc.DBAPIError as error:
            code = getattr(error.orig, "sqlstate", None)
            if code == "55P03":
                with engine.connect() as connection:
                    held_by = holders(connection) or "a session that has ended since"
                raise SchemaLockError(
                    f"a lock orbit's workers take at start was held more than {LOCK_TIMEOUT_MS / 1000:g} s"
                    f" by {held_by}; end a session that is not a worker starting (SELECT"
                    " pg_terminate_backend(PID)), a prepared transaction with ROLLBACK PREPARED 'GID'"
                ) from None
            if code not in RACES or attempt == RACE_ATTEMPTS:
                raise
            time.sleep(random.uniform(0, 0.05 * attempt))
    raise AssertionError("unreachable")


def harden(connection: Connection) -> None:
    """Make `work_items` safe against another role's inserts, and its ids 8 bytes wide (idempotent)."""
    widen_ids(connection)
    quote = connection.dialect.identifier_preparer.quote
    schema = quote(connection.scalar(sa.text("SELECT current_schema()")))
    sequence = connection.scalar(sa.text("SELECT pg_get_serial_sequence('work_items', 'id')"))
    connection.execute(sa.text(NEW_ITEM_FUNCTION.format(schema=schema, sequence=sequence)))
    present = connection.scalar(
        sa.text(
            "SELECT 1 FROM pg_trigger WHERE tgname = 'orbit_new_work_item'"
            " AND tgrelid = to_regclass('work_items')"
        )
    )
    if not present:  # CREATE TRIGGER locks the table against inserts: only once
        connection.execute(sa.text(NEW_ITEM_TRIGGER.format(schema=schema)))


def widen_ids(connection: Connection) -> None:
    """Make an inbox made with 4-byte ids (before 8-byte ones) count to 2^63: 2^31 runs out in years."""
    kind = connection.scalar(
        sa.text(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'work_items' AND column_name = 'id'"
        )
    )
    if kind == "integer":
        sequence = connection.scalar(sa.text("SELECT pg_get_serial_sequence('work_items', 'id')"))
        log.info("widening work_items.id to 8 bytes (once; the table is rewritten)")
        connection.execute(sa.text("ALTER TABLE work_items ALTER COLUMN id TYPE bigint"))
        connection.execute(sa.text(f"ALTER SEQUENCE {sequence} AS bigint"))


# Who holds a lock on the inbox's tables or an advisory lock: sessions, then prepared transactions.
LOCKING_SESSIONS = sa.text(
    "SELECT DISTINCT a.usename, a.pid, a.state FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
    " WHERE l.granted AND l.pid <> pg_backend_pid() AND (l.locktype = 'advisory' OR l.relation IN"
    " (to_regclass('work_items'), to_regclass('deliveries'), to_regclass('health'))) ORDER BY a.pid"
)
LOCKING_PREPARED = sa.text(
    "SELECT DISTINCT p.gid, p.owner FROM pg_locks l JOIN pg_locks x"
    " ON x.virtualtransaction = l.virtualtransaction AND x.locktype = 'transactionid'"
    " JOIN pg_prepared_xacts p ON p.transaction = x.transactionid"
    " WHERE l.granted AND l.pid IS NULL AND (l.locktype = 'advisory' OR l.relation IN"
    " (to_regclass('work_items'), to_regclass('deliveries'), to_regclass('health'))) ORDER BY p.gid"
)


def holders(connection: Connection) -> str:
    """Return who else holds locks on the inbox or advisory locks: sessions, and prepared transactions.

    A session reads `role (pid N, state)`; a prepared transaction, which outlives its session and the
    server's restart, `prepared transaction 'GID' of role` (ended by ROLLBACK PREPARED 'GID').
    """
    sessions = connection.execute(LOCKING_SESSIONS).all()
    prepared = connection.execute(LOCKING_PREPARED).all()
    return ", ".join(
        [f"{row.usename} (pid {row.pid}, {row.state})" for row in sessions]
        + [f"prepared transaction '{row.gid}' of {row.owner}" for row in prepared]
    )

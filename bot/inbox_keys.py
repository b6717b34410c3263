"""The ordering keys' locks on PostgreSQL: a row of `work_keys` per key, locked until commit.

Whether a new item waits behind its key's unfinished ones is decided under the key's lock (by the
new-item trigger, `inbox_schema`), and a worker releases a key's next item under it too: else a
delivery recorded while its key's last item finishes could wait behind it and not be released.
Row locks, not advisory locks: a row lock takes no room in the server's shared lock table, so a role
that inserts many items in one transaction (the ingest's) cannot fill that table with them. A
worker waits for a key's row only `KEY_LOCK_PATIENCE_SECONDS`; the rows of keys with no work left
are deleted as work is pruned.
"""

from time import monotonic, sleep  # not `time.time`, which tests move by hand

import sqlalchemy as sa
from sqlalchemy.engine import Connection

KEY_LOCK_PATIENCE_SECONDS = 0.05  # a recorder holds a key's row for milliseconds; another role, for ever
LOCK_FREE_KEYS = sa.text(
    "SELECT ordering_key FROM work_keys WHERE ordering_key = ANY(CAST(:keys AS varchar[]))"
    " FOR UPDATE SKIP LOCKED"
)
KNOWN_KEYS = sa.text("SELECT ordering_key FROM work_keys WHERE ordering_key = ANY(CAST(:keys AS varchar[]))")
FORGET_IDLE_KEYS = sa.text(
    "DELETE FROM work_keys WHERE ordering_key IN (SELECT k.ordering_key FROM work_keys k"
    " WHERE k.ordering_key = ANY(CAST(:keys AS varchar[])) AND NOT EXISTS"
    " (SELECT 1 FROM work_items i WHERE i.ordering_key = k.ordering_key) FOR UPDATE SKIP LOCKED)"
)


def lock_keys(connection: Connection, keys: list[str]) -> None:
    """Lock the keys' rows until commit; wait for those locked elsewhere only within the patience.

    A key without a row (recorded before the rows existed) has no recorder holding it: nothing to wait.
    """
    deadline = monotonic() + KEY_LOCK_PATIENCE_SECONDS
    while keys:
        locked = set(connection.scalars(LOCK_FREE_KEYS, {"keys": keys}))
        if len(locked) == len(keys):
            return
        keys = sorted(set(connection.scalars(KNOWN_KEYS, {"keys": keys})) - locked)
        if monotonic() > deadline:
            return
        if keys:
            sleep(0.005)


def forget_idle_keys(connection: Connection, keys: list[str]) -> None:
    """Delete the rows of those keys that have no work item left and that no one holds."""
    if keys:
        connection.execute(FORGET_IDLE_KEYS, {"keys": keys})

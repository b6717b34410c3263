"""The ordering keys' locks on PostgreSQL: a row of `work_keys` per key, locked until commit.

Whether a new item waits behind its key's unfinished ones is decided under the key's lock (by the
new-item trigger, `inbox_schema`), and a worker releases a key's next item under it too: else a
delivery recorded while its key's last item finishes could wait behind it and not be released.
Row locks, not advisory locks: a row lock takes no room in the server's shared lock table, so a role
that inserts many items in one transaction (the ingest's) cannot fill that table with them. No one
waits for a key's row another session holds, which any role that inserts items may do: the new item
waits, the release goes on without it, and the workers' stranded pass (`Inbox.release_stranded`)
starts what neither did. The rows of keys with no work left are deleted as work is pruned.
"""

import sqlalchemy as sa
from sqlalchemy.engine import Connection

LOCK_FREE_KEYS = sa.text(
    "SELECT ordering_key FROM work_keys WHERE ordering_key = ANY(CAST(:keys AS varchar[]))"
    " FOR UPDATE SKIP LOCKED"
)
FORGET_IDLE_KEYS = sa.text(
    "DELETE FROM work_keys WHERE ordering_key IN (SELECT k.ordering_key FROM work_keys k"
    " WHERE k.ordering_key = ANY(CAST(:keys AS varchar[])) AND NOT EXISTS"
    " (SELECT 1 FROM work_items i WHERE i.ordering_key = k.ordering_key) FOR UPDATE SKIP LOCKED)"
)


def lock_keys(connection: Connection, keys: list[str]) -> None:
    """Lock the rows of those keys no one else holds, until commit; never wait for the others."""
    connection.execute(LOCK_FREE_KEYS, {"keys": keys})


def forget_idle_keys(connection: Connection, keys: list[str]) -> None:
    """Delete the rows of those keys that have no work item left and that no one holds."""
    if keys:
        connection.execute(FORGET_IDLE_KEYS, {"keys": keys})

"""One SQLite writer at a time across the threads and the processes that share a database file.

SQLite lets one transaction write at a time; a second writer waits in SQLite's busy handler, whose
sleeps grow to 100 ms. Waiting on a lock instead wakes the next writer as soon as the first is done,
whether it is a thread of this process or another `orbit serve` process on the same file.
"""

import fcntl
import os
import threading
from types import TracebackType


class WriterLock:
    """A context manager held around every write transaction (and checkpoint) of one database."""

    def __init__(self, database: str | None) -> None:
        self._threads = threading.Lock()
        in_memory = not database or database == ":memory:" or database.startswith("file::memory:")
        self._path = None if in_memory else f"{database}.lock"
        self._descriptor: int | None = None

    def __enter__(self) -> None:
        self._threads.acquire()
        if self._path is None:
            return
        try:
            if self._descriptor is None:
                self._descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._descriptor, fcntl.LOCK_EX)  # released by the kernel if the process dies
        except BaseException:
            self._threads.release()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if self._descriptor is not None:
                fcntl.flock(self._descriptor, fcntl.LOCK_UN)
        finally:
            self._threads.release()

"""aiohttp connection pools that live as long as their event loop, for the clients handlers share.

A process may run several event loops one after another (tests, CLI runs): each gets its own pool,
and a closed loop's pool is dropped with it.
"""

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

import aiohttp


class LoopPool(aiohttp.TCPConnector):
    """A pool that lives as long as its event loop: it is never closed, and goes with the loop unsaid.

    aiohttp reports a pool or session still open when collected (a log line at exit, through the
    loop's exception handler); once the loop is closed its sockets are gone with it.
    """

    @property
    def closed(self) -> bool:
        """Return whether the pool is closed: by itself, or with its event loop."""
        return super().closed or self._loop.is_closed()

    def __del__(self, _warnings: Any = None) -> None:
        """Say nothing: the pool is dropped only with its owner or its loop, by design."""


class LoopSessions:
    """One `aiohttp.ClientSession` per running event loop, made by `make` on the loop's first request."""

    def __init__(self, make: Callable[[], aiohttp.ClientSession]) -> None:
        self._make = make
        self.sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )

    def session(self) -> aiohttp.ClientSession:
        """Return the running loop's session, made now if it has none (or its own was closed)."""
        loop = asyncio.get_running_loop()
        session = self.sessions.get(loop)
        if session is None or session.closed:
            self._forget_closed_loops()
            session = self._make()
            self.sessions[loop] = session
        return session

    def _forget_closed_loops(self) -> None:
        """Drop the pools of event loops that are closed: their sockets went with them.

        A pool refers to its loop, so a weak key alone would keep both.
        """
        for loop, session in list(self.sessions.items()):
            if loop.is_closed():
                session.detach()
                del self.sessions[loop]

    async def aclose(self) -> None:
        """Close the running loop's session and its connections (a loop about to end: a CLI run, a test)."""
        session = self.sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()

    def detach_all(self) -> None:
        """Let every session go without closing it (its owner is collected: a process's end, a test's)."""
        for session in list(self.sessions.values()):
            session.detach()

"""Adaptive batching inside one process: concurrent requests share one call.

While a batch runs, newly arrived items queue; the next call takes all of them (up to a limit).
A lone request therefore waits for nothing, and a burst is served in few calls. The bot batches
inbox writes into one transaction with it (group commit). `model/batching.py` is the model
project's own copy for forward passes: the model must stand alone, without the App.
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    """Gather items submitted concurrently into batched calls of `run`.

    `run` answers each item with its result, or with the exception that item alone raises.

    `run` goes to a worker thread unless `in_thread` is False: a call of a millisecond or two
    (a local SQLite commit) costs less on the event loop than the two thread wake-ups around it.
    """

    def __init__(
        self,
        run: Callable[[list[In]], Sequence[Out | Exception]],
        max_batch: int = 32,
        in_thread: bool = True,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._in_thread = in_thread
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        """Return the result of `run` for this one item."""
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let requests that arrived together join this batch
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                items = [item for item, _ in batch]
                results = await asyncio.to_thread(self._run, items) if self._in_thread else self._run(items)
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

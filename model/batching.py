"""Adaptive batching inside one process: concurrent requests share one call.

While a batch runs, newly arrived items queue; the next call takes all of them (up to a limit).
A lone request therefore waits for nothing, and a burst is served in few calls. The service
batches decoding and forward passes with it (`bot/batching.py` is the App's own copy, for inbox
writes: the model stands alone, without the App).
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    """Gather items submitted concurrently into batched calls of `run`.

    `run` goes to a worker thread unless `in_thread` is False: a call of a millisecond or two
    (a local SQLite commit) costs less on the event loop than the two thread wake-ups around it.
    Up to `parallel` calls run at once (each in its own thread): while one runs, the next takes what
    has queued, so a process can keep as many cores busy with `run` as it has calls in flight.
    """

    def __init__(
        self,
        run: Callable[[list[In]], Sequence[Out]],
        max_batch: int = 32,
        in_thread: bool = True,
        parallel: int = 1,
    ) -> None:
        if parallel < 1 or (parallel > 1 and not in_thread):
            raise ValueError("parallel calls need threads: parallel must be 1, or in_thread True")
        self._run = run
        self._max_batch = max_batch
        self._in_thread = in_thread
        self._parallel = parallel
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._drainers: set[asyncio.Task[None]] = set()

    async def submit(self, item: In) -> Out:
        """Return the result of `run` for this one item."""
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        # a finished drainer leaves the set only in a callback, later: count those still running
        if sum(not drainer.done() for drainer in self._drainers) < self._parallel:
            drainer = asyncio.create_task(self._drain())
            self._drainers.add(drainer)
            drainer.add_done_callback(self._drainers.discard)
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
                if not future.done():
                    future.set_result(result)

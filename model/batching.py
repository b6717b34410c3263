"""Adaptive batching inside one process: concurrent requests share one forward pass.

While a batch runs, newly arrived images queue; the next pass takes all of them (up to a
limit). A lone request therefore waits for nothing, and a burst is served in few passes.
"""

import asyncio
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

Pixels = NDArray[np.uint8]
Scores = NDArray[np.float32]


class MicroBatcher:
    """Gather single images submitted concurrently into batched calls of `run`."""

    def __init__(self, run: Callable[[Pixels], Scores], max_batch: int = 32) -> None:
        self._run = run
        self._max_batch = max_batch
        self._pending: list[tuple[Pixels, asyncio.Future[Scores]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, pixels: Pixels) -> Scores:
        """Return the scores of one preprocessed image (h, w, c)."""
        future: asyncio.Future[Scores] = asyncio.get_running_loop().create_future()
        self._pending.append((pixels, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let requests that arrived together join this batch
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                scores = await asyncio.to_thread(self._run, np.stack([pixels for pixels, _ in batch]))
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), row in zip(batch, scores, strict=True):
                if not future.done():
                    future.set_result(row)

import asyncio

import numpy as np
import pytest

from model.batching import MicroBatcher


async def test_concurrent_requests_share_passes_and_get_their_own_rows() -> None:
    batch_sizes: list[int] = []

    def run(pixels: np.ndarray) -> np.ndarray:
        batch_sizes.append(len(pixels))
        return pixels.reshape(len(pixels), -1)[:, :1].astype(np.float32) * 2

    batcher = MicroBatcher(run, max_batch=8)
    images = [np.full((2, 2, 1), i, dtype=np.uint8) for i in range(20)]
    results = await asyncio.gather(*(batcher.submit(image) for image in images))
    assert [float(r[0]) for r in results] == [2.0 * i for i in range(20)]
    assert sum(batch_sizes) == 20
    assert max(batch_sizes) == 8
    assert len(batch_sizes) < 20


async def test_a_lone_request_is_not_held_back() -> None:
    batcher = MicroBatcher(lambda p: np.ones((len(p), 3), dtype=np.float32))
    result = await asyncio.wait_for(batcher.submit(np.zeros((2, 2, 3), dtype=np.uint8)), timeout=1)
    assert result.tolist() == [1.0, 1.0, 1.0]


async def test_a_failing_pass_fails_its_requests_and_the_next_pass_still_runs() -> None:
    calls = 0

    def run(pixels: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("out of memory")
        return np.zeros((len(pixels), 2), dtype=np.float32)

    batcher = MicroBatcher(run)
    with pytest.raises(RuntimeError, match="out of memory"):
        await batcher.submit(np.zeros((1, 1, 1), dtype=np.uint8))
    assert (await batcher.submit(np.zeros((1, 1, 1), dtype=np.uint8))).shape == (2,)

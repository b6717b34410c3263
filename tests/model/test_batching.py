import asyncio
import threading

import pytest

from model.batching import MicroBatcher


async def test_concurrent_requests_share_passes_and_get_their_own_rows() -> None:
    batch_sizes: list[int] = []

    def run(items: list[int]) -> list[int]:
        batch_sizes.append(len(items))
        return [item * 2 for item in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=8)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    assert results == [2 * i for i in range(20)]
    assert sum(batch_sizes) == 20
    assert max(batch_sizes) == 8
    assert len(batch_sizes) < 20


async def test_a_lone_request_is_not_held_back() -> None:
    batcher: MicroBatcher[str, str] = MicroBatcher(lambda items: [item.upper() for item in items])
    assert await asyncio.wait_for(batcher.submit("saturn"), timeout=1) == "SATURN"


async def test_a_failing_pass_fails_its_requests_and_the_next_pass_still_runs() -> None:
    calls = 0

    def run(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("out of memory")
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(run)
    with pytest.raises(RuntimeError, match="out of memory"):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2


async def test_a_batcher_can_run_its_passes_on_the_event_loop_itself() -> None:
    threads: set[int] = set()

    def run(items: list[int]) -> list[int]:
        threads.add(threading.get_ident())
        return items

    on_loop: MicroBatcher[int, int] = MicroBatcher(run, in_thread=False)
    assert await asyncio.gather(*(on_loop.submit(i) for i in range(5))) == list(range(5))
    assert threads == {threading.get_ident()}
    in_thread: MicroBatcher[int, int] = MicroBatcher(run)
    await in_thread.submit(1)
    assert len(threads) == 2


async def test_parallel_calls_run_at_once_each_taking_what_has_queued() -> None:
    """With `parallel=2`, a second call starts while the first runs: both meet at a barrier that a
    single call at a time would never pass; every item still gets its own result."""
    meeting = threading.Barrier(2, timeout=5)
    batch_sizes: list[int] = []

    def run(items: list[int]) -> list[int]:
        batch_sizes.append(len(items))
        if len(batch_sizes) <= 2:
            meeting.wait()
        return [item + 100 for item in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=4, parallel=2)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.05)  # the first call is running, alone, and waits at the barrier
    rest = await asyncio.gather(*(batcher.submit(i) for i in range(1, 9)))
    assert [await first, *rest] == [i + 100 for i in range(9)]
    assert batch_sizes[0] == 1 and sum(batch_sizes) == 9 and max(batch_sizes) <= 4


async def test_a_lone_item_after_a_call_ended_is_not_left_waiting() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: items, parallel=2)
    for item in range(20):
        assert await asyncio.wait_for(batcher.submit(item), timeout=1) == item


def test_parallel_calls_need_threads() -> None:
    with pytest.raises(ValueError, match="parallel must be 1, or in_thread True"):
        MicroBatcher(lambda items: items, in_thread=False, parallel=2)
    with pytest.raises(ValueError, match="parallel must be 1"):
        MicroBatcher(lambda items: items, parallel=0)

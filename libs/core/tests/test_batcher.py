"""The micro-batcher: per-item answers, size and delay flushes, failures that stay in their batch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from leadflow_core.batcher import BlockingBatcher, MicroBatcher
from leadflow_core.testing import wait_for


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def flush(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        await asyncio.sleep(0)
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def test_concurrent_items_share_a_batch_and_get_their_own_answers() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec.flush, max_size=100, max_delay_seconds=0.01)
    answers = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert answers == [0, 10, 20, 30, 40]
    assert rec.batches == [[0, 1, 2, 3, 4]]


async def test_a_full_batch_flushes_without_waiting_for_the_delay() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec.flush, max_size=3, max_delay_seconds=3600)
    answers = await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(6))), 5)
    assert answers == [0, 10, 20, 30, 40, 50]
    assert rec.batches == [[0, 1, 2], [3, 4, 5]]


async def test_one_items_failure_fails_only_that_item() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec.flush, max_size=10)
    results = await asyncio.gather(*(batcher.submit(i) for i in (1, -1, 2)), return_exceptions=True)
    assert results[0] == 10
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "bad -1"
    assert results[2] == 20
    assert len(rec.batches) == 1


async def test_a_failed_flush_fails_its_batch_only() -> None:
    calls: list[list[int]] = []

    async def flush(items: list[int]) -> Sequence[int | BaseException]:
        calls.append(list(items))
        if len(calls) == 1:
            raise ConnectionError("database down")
        return items

    batcher = MicroBatcher(flush, max_size=2, max_delay_seconds=3600)
    first = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    second = await asyncio.gather(batcher.submit(3), batcher.submit(4), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in first)
    assert list(second) == [3, 4]


async def test_a_flush_answering_the_wrong_number_of_items_fails_the_batch() -> None:
    async def flush(items: list[int]) -> Sequence[int | BaseException]:
        return items[:-1]

    batcher = MicroBatcher(flush, max_size=2)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_caller_that_stops_waiting_does_not_stop_its_item() -> None:
    handled: list[int] = []
    release = asyncio.Event()

    async def flush(items: list[int]) -> Sequence[int | BaseException]:
        await release.wait()
        handled.extend(items)
        return items

    batcher = MicroBatcher(flush, max_size=10, max_delay_seconds=0.001)
    waiter = asyncio.create_task(batcher.submit(7))
    other = asyncio.create_task(batcher.submit(8))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    assert await other == 8
    await batcher.close()
    assert handled == [7, 8]


async def test_close_flushes_what_waits() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec.flush, max_size=10, max_delay_seconds=3600)
    pending = asyncio.create_task(batcher.submit(4))
    await asyncio.sleep(0)
    await batcher.close()
    assert await pending == 40


def test_max_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_size"):
        MicroBatcher(Recorder().flush, max_size=0)


async def test_items_wait_for_a_free_slot_and_leave_together() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def flush(items: list[int]) -> Sequence[int | BaseException]:
        batches.append(list(items))
        if len(batches) == 1:
            await release.wait()
        return items

    batcher = MicroBatcher(flush, max_size=4, max_delay_seconds=0.001, max_in_flight=1)
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0.02)  # the first batch is running and holds the only slot
    later = [asyncio.create_task(batcher.submit(i)) for i in range(1, 7)]
    await asyncio.sleep(0.02)
    assert batches == [[0]]  # nothing else left while the slot was taken
    release.set()
    assert await first == 0
    assert [await t for t in later] == [1, 2, 3, 4, 5, 6]
    assert batches == [[0], [1, 2, 3, 4], [5, 6]]  # grouped, and never over max_size


# ---- the same batcher for threads ---------------------------------------------------------


class Refused(Exception):
    pass


def test_threads_waiting_behind_a_batch_in_flight_share_the_next_one() -> None:
    release = threading.Event()
    batches: list[list[int]] = []

    def flush(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        if len(batches) == 1:
            release.wait(10)
        return [Refused(f"no {i}") if i == 13 else i * 10 for i in items]

    batcher: BlockingBatcher[int, int] = BlockingBatcher(flush, max_size=64, max_delay_seconds=0.0)
    try:
        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(batcher.call, 1)
            wait_for(lambda: len(batches) == 1, timeout=10, what="the first batch in flight")
            rest = {i: pool.submit(batcher.call, i) for i in (2, 3, 13, 4, 5)}
            wait_for(lambda: batcher.waiting == 5, timeout=10, what="five calls waiting")
            release.set()
            assert first.result(10) == 10
            for i, future in rest.items():
                if i == 13:
                    # One item's failure is that caller's alone.
                    with pytest.raises(Refused):
                        future.result(10)
                else:
                    assert future.result(10) == i * 10
    finally:
        batcher.close()
    assert batches[0] == [1]
    assert sorted(batches[1]) == [2, 3, 4, 5, 13]
    assert len(batches) == 2


def test_a_failed_blocking_flush_fails_its_batch_only() -> None:
    calls = 0

    def flush(items: Sequence[str]) -> list[str | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("dispatcher unavailable")
        return [s.upper() for s in items]

    batcher: BlockingBatcher[str, str] = BlockingBatcher(flush, max_size=4, max_delay_seconds=0.0)
    try:
        with pytest.raises(ConnectionError):
            batcher.call("a")
        assert batcher.call("b") == "B"
    finally:
        batcher.close()


def test_a_short_blocking_answer_is_an_error_for_every_caller() -> None:
    batcher: BlockingBatcher[int, int] = BlockingBatcher(lambda items: [], max_size=4, max_delay_seconds=0.0)
    try:
        with pytest.raises(RuntimeError, match="answered 0 of 1"):
            batcher.call(7)
    finally:
        batcher.close()

"""The worker threads' micro-batcher: shared round trips, each caller its own answer."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from leadflow_core.testing import wait_for
from leadflow_enrichment.batching import MicroBatcher


class Refused(Exception):
    pass


def test_calls_waiting_behind_a_batch_in_flight_share_the_next_one() -> None:
    release = threading.Event()
    batches: list[list[int]] = []

    def flush(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        if len(batches) == 1:
            release.wait(10)
        return [Refused(f"no {i}") if i == 13 else i * 10 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(flush, max_size=64, max_wait=0.0)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher.call, 1)
        wait_for(lambda: len(batches) == 1, timeout=10, what="the first batch in flight")
        rest = {i: pool.submit(batcher.call, i) for i in (2, 3, 13, 4, 5)}
        wait_for(lambda: len(batcher._pending) == 5, timeout=10, what="five calls waiting")
        release.set()
        assert first.result(10) == 10
        for i, future in rest.items():
            if i == 13:
                # One item's failure is that caller's alone.
                with pytest.raises(Refused):
                    future.result(10)
            else:
                assert future.result(10) == i * 10
    assert batches[0] == [1]
    assert sorted(batches[1]) == [2, 3, 4, 5, 13]
    assert len(batches) == 2


def test_a_failed_flush_fails_its_batch_only() -> None:
    calls = 0

    def flush(items: Sequence[str]) -> list[str | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("dispatcher unavailable")
        return [s.upper() for s in items]

    batcher: MicroBatcher[str, str] = MicroBatcher(flush, max_size=4, max_wait=0.0)
    with pytest.raises(ConnectionError):
        batcher.call("a")
    assert batcher.call("b") == "B"


def test_a_short_answer_is_an_error_for_every_caller() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: [], max_size=4, max_wait=0.0)
    with pytest.raises(RuntimeError, match="answered with 0"):
        batcher.call(7)

"""An async micro-batcher: callers submit one item each and await their own answer, while the
batcher hands whole batches to one flush call (one RPC, one transaction) per size or per couple
of milliseconds, whichever comes first.

The flush function answers each item with a value or an exception of its own; one item's failure
fails only that item. A flush that raises fails every item of that batch, and none other. A
caller that stops waiting (cancelled, timed out) does not stop its item: the batch still runs it
to the end, so nothing is half done, and the answer is dropped.

`BlockingBatcher` is the same batcher for threads (the workers' Dramatiq threads): each thread
blocks for its own answer while the batches are made on an event loop of the batcher's own."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class MicroBatcher(Generic[T, R]):
    """`max_in_flight` (0 = no limit) caps the batches running at once: while that many run,
    new items wait and leave together when one finishes, so batches grow with the load instead
    of every item paying its own call when the service is slow."""

    def __init__(
        self, flush: Flush[T, R], max_size: int = 64, max_delay_seconds: float = 0.002, max_in_flight: int = 0
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._flush = flush
        self.max_size = max_size
        self.max_delay = max_delay_seconds
        self.max_in_flight = max_in_flight
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Items not yet handed to a flush."""
        return len(self._items)

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if len(self._items) >= self.max_size:
            self._start_flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_delay, self._start_flush)
        return await future

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._items:
            if self.max_in_flight and len(self._running) >= self.max_in_flight:
                return  # the next batch to finish sends what waits
            items, futures = self._items[: self.max_size], self._futures[: self.max_size]
            del self._items[: self.max_size], self._futures[: self.max_size]
            task = asyncio.get_running_loop().create_task(self._run(items, futures))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._items and self._timer is None:
            self._start_flush()

    async def _run(self, items: list[T], futures: list[asyncio.Future[R]]) -> None:
        try:
            results = await self._flush(items)
            if len(results) != len(items):
                raise RuntimeError(f"flush answered {len(results)} of {len(items)} items")
        except BaseException as err:  # the whole batch failed: each of its callers hears why
            for future in futures:
                if not future.done():
                    future.set_exception(err)
            if isinstance(err, asyncio.CancelledError):
                raise
            return
        for future, result in zip(futures, results, strict=True):
            if future.done():  # the caller stopped waiting; its item was still handled
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def close(self) -> None:
        """Flush what is waiting and wait for every batch in flight."""
        self._start_flush()
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


class BlockingBatcher(Generic[T, R]):
    """A `MicroBatcher` for threads: `call(item)` blocks the calling thread until its own answer.

    `flush` is a blocking function (one RPC); it runs in the loop's executor with one batch in
    flight by default, so while a batch is out the next one grows (group commit) instead of
    every thread paying its own round trip when the service is slow."""

    def __init__(
        self,
        flush: Callable[[Sequence[T]], Sequence[R | BaseException]],
        max_size: int = 64,
        max_delay_seconds: float = 0.002,
        max_in_flight: int = 1,
    ) -> None:
        async def run(items: list[T]) -> Sequence[R | BaseException]:
            return await asyncio.to_thread(flush, items)

        self._batcher: MicroBatcher[T, R] = MicroBatcher(run, max_size, max_delay_seconds, max_in_flight)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="batcher", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._batcher.waiting

    def call(self, item: T) -> R:
        future = asyncio.run_coroutine_threadsafe(self._batcher.submit(item), self._loop)
        while True:
            # Short waits, not one long one: an exception raised into this thread (Dramatiq's
            # time limit) is delivered between them. The item still runs to its end.
            try:
                return future.result(timeout=0.05)
            except concurrent.futures.TimeoutError:
                continue

    def close(self) -> None:
        """Flush what is waiting, then stop the loop's thread."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._batcher.close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

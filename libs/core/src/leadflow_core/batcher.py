"""An async micro-batcher: callers submit one item each and await their own answer, while the
batcher hands whole batches to one flush call (one RPC, one transaction) per size or per couple
of milliseconds, whichever comes first.

The flush function answers each item with a value or an exception of its own; one item's failure
fails only that item. A flush that raises fails every item of that batch, and none other. A
caller that stops waiting (cancelled, timed out) does not stop its item: the batch still runs it
to the end, so nothing is half done, and the answer is dropped.

`BlockingBatcher` is the same batcher for threads (the workers' Dramatiq threads): each thread
blocks for its own answer while a flusher thread of the batcher's own sends the batches."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
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


class _Batch(Generic[R]):
    """One batch's answer, shared by its callers: they wait on one event, set once."""

    __slots__ = ("done", "error", "results")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.results: Sequence[R | BaseException] = ()
        self.error: BaseException | None = None


class BlockingBatcher(Generic[T, R]):
    """A batcher for threads: `call(item)` blocks the calling thread until its own answer.

    `flush` is a blocking function (one RPC) run by the batcher's own flusher thread(s), one
    batch in flight per thread (`max_in_flight`, 1 by default): while a batch is out the next
    one grows (group commit) instead of every thread paying its own round trip when the service
    is slow. Plain locks and events, not an event loop: handing an item to a loop and its answer
    back cost the workers more CPU than the RPCs they batched."""

    def __init__(
        self,
        flush: Callable[[Sequence[T]], Sequence[R | BaseException]],
        max_size: int = 64,
        max_delay_seconds: float = 0.002,
        max_in_flight: int = 1,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._flush = flush
        self.max_size = max_size
        self.max_delay = max_delay_seconds
        self._cond = threading.Condition(threading.Lock())
        self._items: list[T] = []  # the open batch: callers join it until it leaves
        self._batch: _Batch[R] = _Batch()
        self._opened = 0.0  # when the open batch got its first item
        self._full: deque[tuple[list[T], _Batch[R]]] = deque()  # batches of max_size, not yet out
        self._closing = False
        self._threads = [
            threading.Thread(target=self._send_forever, name="batcher", daemon=True)
            for _ in range(max(1, max_in_flight))
        ]
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        """Items not yet handed to a flush."""
        with self._cond:
            return len(self._items) + sum(len(items) for items, _ in self._full)

    def call(self, item: T) -> R:
        with self._cond:
            if self._closing:
                raise RuntimeError("the batcher is closed")
            batch, index = self._batch, len(self._items)
            self._items.append(item)
            if index == 0:
                self._opened = time.monotonic()
                self._cond.notify()
            if len(self._items) >= self.max_size:
                self._full.append(self._take())
                self._cond.notify()
        # Short waits, not one long one: an exception raised into this thread (Dramatiq's time
        # limit) is delivered between them. The item still runs to its end.
        while not batch.done.is_set():
            batch.done.wait(0.05)
        if batch.error is not None:
            raise batch.error
        result = batch.results[index]
        if isinstance(result, BaseException):
            raise result
        return result

    def _take(self) -> tuple[list[T], _Batch[R]]:
        taken = (self._items, self._batch)
        self._items, self._batch = [], _Batch()
        return taken

    def _next(self) -> tuple[list[T], _Batch[R]] | None:
        """The next batch to send (None: closed and nothing left), waiting for one to be due."""
        with self._cond:
            while True:
                if self._full:
                    return self._full.popleft()
                if self._items:
                    left = self._opened + self.max_delay - time.monotonic()
                    if left <= 0 or self._closing:
                        return self._take()
                    self._cond.wait(left)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()

    def _send_forever(self) -> None:
        while (taken := self._next()) is not None:
            items, batch = taken
            try:
                results = self._flush(items)
                if len(results) != len(items):
                    raise RuntimeError(f"flush answered {len(results)} of {len(items)} items")
                batch.results = results
            except BaseException as err:  # the whole batch failed: each of its callers hears why
                batch.error = err
            finally:
                batch.done.set()

    def close(self) -> None:
        """Send what is waiting, then stop the flusher threads."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

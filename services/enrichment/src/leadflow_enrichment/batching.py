"""A micro-batcher for the worker threads: concurrent calls of one kind share one RPC.

Each worker thread still runs its own message (its own retries, dead letter and dial claim);
only the round trip is shared. The first caller of a batch waits up to `max_wait` seconds (or
until `max_size` items are in) for company, and for the batch before it to come back: one batch
is in flight at a time, so batches grow with the round trip's latency (as in group commit). It
sends the batch with `flush` and hands every caller its own answer or its own error; a failed
flush fails that batch's callers only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass
class _Slot(Generic[Req, Resp]):
    item: Req
    done: threading.Event = field(default_factory=threading.Event)
    result: Resp | None = None
    error: BaseException | None = None


class MicroBatcher(Generic[Req, Resp]):
    def __init__(
        self,
        flush: Callable[[Sequence[Req]], Sequence[Resp | BaseException]],
        max_size: int = 64,
        max_wait: float = 0.002,
    ) -> None:
        self._flush = flush
        self.max_size = max_size
        self.max_wait = max_wait
        self._cond = threading.Condition()
        self._pending: list[_Slot[Req, Resp]] = []
        self._leader = False
        self._in_flight = False

    def call(self, item: Req) -> Resp:
        slot: _Slot[Req, Resp] = _Slot(item)
        with self._cond:
            self._pending.append(slot)
            if len(self._pending) >= self.max_size:
                self._cond.notify_all()
        while not slot.done.is_set():
            with self._cond:
                # Whoever finds its item waiting with no leader leads (also after a leader was
                # interrupted, e.g. by Dramatiq's time limit, before it took the batch).
                leads = not self._leader and any(s is slot for s in self._pending)
                if leads:
                    self._leader = True
            if leads:
                self._lead()
            else:
                slot.done.wait(0.05)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self) -> None:
        batch: list[_Slot[Req, Resp]] = []
        deadline = time.monotonic() + self.max_wait
        try:
            with self._cond:
                # Group commit: while the previous batch is in flight, this one keeps growing.
                while True:
                    left = deadline - time.monotonic()
                    if not self._in_flight and (left <= 0 or len(self._pending) >= self.max_size):
                        break
                    self._cond.wait(None if self._in_flight else left)
                batch, self._pending = self._pending, []
                self._in_flight = True
        finally:
            with self._cond:
                self._leader = False
        try:
            self._run(batch)
        finally:
            with self._cond:
                self._in_flight = False
                self._cond.notify_all()

    def _run(self, batch: list[_Slot[Req, Resp]]) -> None:
        try:
            answers = self._flush([s.item for s in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} answered with {len(answers)} items")
            for s, answer in zip(batch, answers, strict=True):
                if isinstance(answer, BaseException):
                    s.error = answer
                else:
                    s.result = answer
        except BaseException as err:
            for s in batch:
                if s.result is None and s.error is None:
                    s.error = err
        finally:
            for s in batch:
                s.done.set()

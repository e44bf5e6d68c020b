"""A micro-batcher for the worker threads: concurrent calls of one kind share one RPC.

Each worker thread still runs its own message (its own retries, dead letter and dial claim);
only the round trip is shared. The first caller of a batch waits up to `max_wait` seconds (or
until `max_size` items are in) for company, sends the batch with `flush`, and hands every
caller its own answer or its own error; a failed flush fails that batch's callers only.
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

    def call(self, item: Req) -> Resp:
        slot: _Slot[Req, Resp] = _Slot(item)
        with self._cond:
            self._pending.append(slot)
            leads = not self._leader
            if leads:
                self._leader = True
            elif len(self._pending) >= self.max_size:
                self._cond.notify_all()
        if leads:
            deadline = time.monotonic() + self.max_wait
            with self._cond:
                while len(self._pending) < self.max_size:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch, self._pending = self._pending, []
                self._leader = False
            self._run(batch)
        slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

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

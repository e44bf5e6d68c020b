"""Delivers Twilio-style status callbacks, signed, from a few background threads ("lanes"): a
call's callbacks all go through one lane, in due order, and different calls' go out side by side,
as a carrier's many senders post them. One lane for every call made the simulator the mesh's
bottleneck: each callback waited for the one before it to be answered (about 30 a second)."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from leadflow_core.logs import get_logger
from leadflow_enrichment.providers.twilio_signature import twilio_signature

log = get_logger(__name__)


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    url: str = field(compare=False)
    params: dict[str, str] = field(compare=False)
    auth_token: str = field(compare=False)
    attempts_left: int = field(compare=False)
    # Runs just before the POST (the simulator records the new status first, like a carrier).
    before_send: Callable[[], None] | None = field(compare=False, default=None)


class CallbackSender:
    """`lanes` daemon threads, each with a due-time heap; `close()` delivers what is due and stops."""

    def __init__(
        self, *, timeout: float = 5.0, attempts: int = 3, retry_base_seconds: float = 0.2, lanes: int = 8
    ) -> None:
        client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=max(1, lanes), max_keepalive_connections=max(1, lanes)),
        )
        self._client = client
        self._lanes = [_Lane(client, max(1, attempts), retry_base_seconds, n) for n in range(max(1, lanes))]

    def schedule(
        self,
        delay_seconds: float,
        url: str,
        params: dict[str, str],
        auth_token: str,
        before_send: Callable[[], None] | None = None,
    ) -> None:
        call = params.get("CallSid", "").encode()
        self._lanes[zlib.crc32(call) % len(self._lanes)].schedule(
            delay_seconds, url, params, auth_token, before_send
        )

    def pending(self) -> int:
        return sum(lane.pending() for lane in self._lanes)

    def close(self, timeout: float = 10.0) -> None:
        for lane in self._lanes:
            lane.close_begin()
        deadline = time.monotonic() + timeout
        for lane in self._lanes:
            lane.join(max(0.0, deadline - time.monotonic()))
        self._client.close()


class _Lane:
    def __init__(self, client: httpx.Client, attempts: int, retry_base_seconds: float, number: int) -> None:
        self._heap: list[_Delivery] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._attempts = attempts
        self._retry_base = retry_base_seconds
        self._client = client
        self._thread = threading.Thread(target=self._run, name=f"status-callbacks-{number}", daemon=True)
        self._thread.start()

    def schedule(
        self,
        delay_seconds: float,
        url: str,
        params: dict[str, str],
        auth_token: str,
        before_send: Callable[[], None] | None,
    ) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("callback sender is closed")
            heapq.heappush(
                self._heap,
                _Delivery(
                    time.monotonic() + delay_seconds,
                    next(self._seq),
                    url,
                    params,
                    auth_token,
                    self._attempts,
                    before_send,
                ),
            )
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def close_begin(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _next(self) -> _Delivery | None:
        with self._cond:
            while True:
                if self._closed and not self._heap:
                    return None
                if self._heap:
                    wait = self._heap[0].due - time.monotonic()
                    # On close, pending callbacks go out now rather than being dropped.
                    if wait <= 0 or self._closed:
                        return heapq.heappop(self._heap)
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while (delivery := self._next()) is not None:
            try:
                self._deliver(delivery)
            except Exception:  # the thread must outlive any one bad delivery
                log.exception("status callback crashed", status=delivery.params.get("CallStatus", ""))

    def _deliver(self, d: _Delivery) -> None:
        if d.before_send is not None:
            d.before_send()
            d.before_send = None
        signature = twilio_signature(d.auth_token, d.url, d.params)
        try:
            response = self._client.post(d.url, data=d.params, headers={"X-Twilio-Signature": signature})
            ok = response.status_code < 500
            outcome = str(response.status_code)
        except httpx.HTTPError as err:
            ok, outcome = False, type(err).__name__
        if ok:
            log.debug(
                "status callback sent",
                call_sid=d.params.get("CallSid", ""),
                status=d.params.get("CallStatus", ""),
                answer=outcome,
            )
            return
        d.attempts_left -= 1
        if d.attempts_left <= 0 or self._closed:
            log.warning(
                "status callback not delivered",
                call_sid=d.params.get("CallSid", ""),
                status=d.params.get("CallStatus", ""),
                answer=outcome,
            )
            return
        backoff = self._retry_base * 2 ** (self._attempts - d.attempts_left - 1)
        with self._cond:
            d.due = time.monotonic() + backoff
            d.seq = next(self._seq)
            heapq.heappush(self._heap, d)

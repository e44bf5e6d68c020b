"""The vendors' fakes as the suite reads them: what reached the provider, counted per lead.

The fakes themselves (tests/fakes) do only what the vendor documents; these subclasses add the
suite's two switches (callbacks lost in transit, as a network would lose them) and counting."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from decimal import Decimal

from tests.fakes.http_server import RecordedRequest, Reply
from tests.fakes.hubspot import HubSpotFake
from tests.fakes.twilio import TwilioFake


class LateAnswers:
    """Act on the next `times` requests at once, but answer them only `seconds` later: the
    vendor did the work, the client gave up waiting (`FakeHttpServer.stall` waits before acting)."""

    def __init__(self) -> None:
        self._late: list[tuple[str, float]] = []
        self._late_lock = threading.Lock()

    def answer_late(self, times: int, seconds: float, path_contains: str = "") -> None:
        with self._late_lock:
            self._late.extend((path_contains, seconds) for _ in range(times))

    def _late_delay(self, request: RecordedRequest) -> float:
        with self._late_lock:
            for i, (path, seconds) in enumerate(self._late):
                if path in request.path and request.method == "POST":
                    del self._late[i]
                    return seconds
        return 0.0


class CountingTwilio(TwilioFake, LateAnswers):
    def __init__(self, account_sid: str, auth_token: str, call_seconds: int = 75) -> None:
        super().__init__(
            account_sid,
            auth_token,
            auto_progress=["ringing", "in-progress", "completed"],
            duration=call_seconds,
            # As on Twilio: the price shows on the Calls resource a while after the call.
            price_after_seconds=3.0,
        )
        LateAnswers.__init__(self)
        # True: status callbacks are lost on the way (the call still progresses at Twilio).
        self.drop_callbacks = False

    def route(self, request: RecordedRequest) -> Reply:
        # Twilio's Calls API documents no idempotency key: a create with one is a new call like
        # any other (the fake of tests/fakes may still honour it; the suite must not).
        headers = {k: v for k, v in request.headers.items() if k != "idempotency-key"}
        delay = self._late_delay(request)
        reply = super().route(dataclasses.replace(request, headers=headers))
        time.sleep(delay)
        return reply

    def progress(
        self, sid: str, status: str, duration: int | None = None, *, notify: bool = True
    ) -> int | None:
        return super().progress(sid, status, duration, notify=notify and not self.drop_callbacks)

    def calls_per_number(self) -> Counter[str]:
        return Counter(c.to for c in list(self.calls.values()))

    def prices_usd(self) -> Decimal:
        """What Twilio charged: the sum of its (negative) call prices, as a positive amount."""
        return sum((abs(Decimal(c.price)) for c in list(self.calls.values()) if c.price), Decimal(0))


class CountingHubSpot(HubSpotFake, LateAnswers):
    """HubSpot as the suite reads it: `writes[(idProperty, id)]` counts every upsert input the
    fake applied (its own count)."""

    def __init__(self, access_token: str) -> None:
        super().__init__(access_token)
        LateAnswers.__init__(self)

    def route(self, request: RecordedRequest) -> Reply:
        delay = self._late_delay(request)
        reply = super().route(request)
        time.sleep(delay)
        return reply

"""A circuit breaker per tenant and provider, kept in Redis so every worker process shares it.

Closed: calls go through; failures within a window are counted. After `threshold` failures the
breaker opens for `open_seconds`: that tenant's jobs for that provider are held (re-queued with a
delay), while other tenants and this tenant's other providers keep flowing. When it has been
open long enough one probe goes through (half-open); its success closes the breaker, its
failure opens it again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import redis


@dataclass(frozen=True)
class BreakerConfig:
    threshold: int = 5
    window_seconds: float = 30.0
    open_seconds: float = 30.0
    # Jobs behind a half-open probe look again this often, so the probe's success releases them
    # within seconds (not a whole open period later); a probe that never reports frees its turn
    # after open_seconds.
    probe_poll_seconds: float = 2.0


class CircuitBreaker:
    def __init__(self, client: redis.Redis, key_base: str, config: BreakerConfig) -> None:
        self.client = client
        self.config = config
        self._open = key_base + ":open"
        self._tripped = key_base + ":tripped"
        self._probe = key_base + ":probe"
        self._failures = key_base + ":failures"

    def wait_seconds(self) -> float:
        """0 when a call may go through now; else how long to hold the job."""
        return self.check()[0]

    def check(self) -> tuple[float, bool]:
        """(seconds to hold the job, whether the breaker is clean: closed with no failures),
        read in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.pttl(self._open)
        pipe.exists(self._tripped)
        pipe.exists(self._failures)
        open_ms, tripped, failures = pipe.execute()
        if int(open_ms) > 0:
            return int(open_ms) / 1000, False
        if tripped:
            # Half-open: one probe at a time.
            probe_ms = int(self.config.open_seconds * 1000)
            if self.client.set(self._probe, "1", nx=True, px=probe_ms):
                return 0.0, False
            probe_left = int(self.client.pttl(self._probe)) / 1000
            return max(0.05, min(self.config.probe_poll_seconds, probe_left)), False
        return 0.0, not failures

    def is_open(self) -> bool:
        return int(self.client.pttl(self._open)) > 0

    def record_success(self) -> None:
        self.client.delete(self._tripped, self._probe, self._failures)

    def record_failure(self) -> bool:
        """Count a failure; True when this one opened the breaker."""
        pipe = self.client.pipeline()
        pipe.incr(self._failures)
        pipe.pexpire(self._failures, int(self.config.window_seconds * 1000), nx=True)
        pipe.exists(self._tripped)
        count, _, half_open = pipe.execute()
        if int(count) < self.config.threshold and not half_open:
            return False
        open_ms = int(self.config.open_seconds * 1000)
        pipe = self.client.pipeline()
        pipe.set(self._open, "1", px=open_ms)
        # Remember the trip well past the open period so the first call after it is a probe.
        pipe.set(self._tripped, "1", px=open_ms * 10 + 60_000)
        pipe.delete(self._failures, self._probe)
        pipe.execute()
        return True


@dataclass
class CleanBreakers:
    """Which breakers this process saw clean (closed, no failures) within the last `ttl`
    seconds: a job for such a provider skips the Redis read, and its success has nothing to
    clear. A breaker another process opens meanwhile is seen here at most `ttl` late."""

    ttl: float
    _until: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def is_clean(self, key: str) -> bool:
        with self._lock:
            return self._until.get(key, 0.0) > time.monotonic()

    def mark(self, key: str, clean: bool) -> None:
        with self._lock:
            if clean and self.ttl > 0:
                self._until[key] = time.monotonic() + self.ttl
            else:
                self._until.pop(key, None)

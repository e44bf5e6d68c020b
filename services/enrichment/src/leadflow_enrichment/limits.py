"""Per-provider concurrency and rate limits on Redis (Dramatiq's rate limiters), per tenant account.

A burst of leads never exceeds a CRM's or the dialer's quota: a job that finds no slot is held
briefly (re-queued with a short delay) instead of calling the provider.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from dramatiq.rate_limits import ConcurrentRateLimiter, WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend


class LimitBusy(Exception):
    """No slot under a provider's limit right now."""


@dataclass(frozen=True)
class ProviderLimits:
    concurrency: int = 0  # 0 = unlimited
    rate_per_second: int = 0

    @classmethod
    def resolve(
        cls, provider: str, options: dict[str, str], concurrency: dict[str, int], rate: dict[str, int]
    ) -> ProviderLimits:
        def opt(key: str, fallback: int) -> int:
            try:
                return max(0, int(options[key]))
            except (KeyError, ValueError):
                return fallback

        return cls(
            concurrency=opt("concurrency", concurrency.get(provider, 0)),
            rate_per_second=opt("rate_per_second", rate.get(provider, 0)),
        )


class Limiters:
    def __init__(self, client: redis.Redis, key_base: str, ttl_seconds: float) -> None:
        self.backend = RedisBackend(client=client)
        self.key_base = key_base
        self.ttl_ms = int(ttl_seconds * 1000)

    @contextlib.contextmanager
    def slot(self, tenant: str, provider: str, limits: ProviderLimits) -> Iterator[None]:
        """Hold one concurrency slot and one unit of this second's rate, or raise LimitBusy."""
        with contextlib.ExitStack() as stack:
            if limits.rate_per_second:
                window = WindowRateLimiter(  # type: ignore[no-untyped-call]
                    self.backend,
                    f"{self.key_base}:rate:{provider}:{tenant}",
                    limit=limits.rate_per_second,
                    window=1,
                )
                stack.enter_context(self._acquire(window))
            if limits.concurrency:
                mutex = ConcurrentRateLimiter(  # type: ignore[no-untyped-call]
                    self.backend,
                    f"{self.key_base}:concurrency:{provider}:{tenant}",
                    limit=limits.concurrency,
                    ttl=self.ttl_ms,
                )
                stack.enter_context(self._acquire(mutex))
            yield

    @contextlib.contextmanager
    def _acquire(self, limiter: ConcurrentRateLimiter | WindowRateLimiter) -> Iterator[None]:
        with limiter.acquire(raise_on_failure=False) as acquired:
            if not acquired:
                raise LimitBusy(limiter.key)
            yield

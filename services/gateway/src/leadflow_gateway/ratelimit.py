"""Abuse limits per source IP and per tenant: fixed one-minute windows counted in Redis."""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from leadflow_core.logs import get_logger
from leadflow_gateway.errors import rate_limited, unavailable

log = get_logger("leadflow.gateway.ratelimit")

WINDOW_SECONDS = 60


class RateLimiter:
    def __init__(self, client: aioredis.Redis, key_prefix: str, fail_open: bool, retry_after: int) -> None:
        self._redis = client
        self._prefix = key_prefix
        self._fail_open = fail_open
        self._retry_after = retry_after

    async def close(self) -> None:
        await self._redis.aclose()

    async def hit(self, scope: str, subject: str, limit: int) -> None:
        """Count one request; raise 429 with `Retry-After` once `limit` is passed in this window."""
        if limit <= 0:
            return
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = f"{self._prefix}{scope}:{subject[:200]}:{window}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, WINDOW_SECONDS + 5)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as err:
            log.warning("rate_limit_unavailable", error=type(err).__name__)
            if self._fail_open:
                return
            raise unavailable("rate limiter unavailable", self._retry_after) from err
        if int(count) > limit:
            retry_after = int((window + 1) * WINDOW_SECONDS - now) + 1
            raise rate_limited(retry_after, scope)

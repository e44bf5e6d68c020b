"""Abuse limits counted in the real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis

from leadflow_gateway.errors import GatewayError
from leadflow_gateway.ratelimit import WINDOW_SECONDS, RateLimiter


async def test_limit_then_429_with_retry_after(redis_url: str, redis_prefix: str) -> None:
    # The four hits inside one one-minute window (the fourth is refused only in the window of
    # the first three).
    if time.time() % WINDOW_SECONDS > 50:
        await asyncio.sleep(WINDOW_SECONDS + 1 - time.time() % WINDOW_SECONDS)
    limiter = RateLimiter(aioredis.Redis.from_url(redis_url), f"{redis_prefix}leadflow:ratelimit:", False, 5)
    try:
        for _ in range(3):
            await limiter.hit("ip", "198.51.100.7", 3)
        before = time.time()
        with pytest.raises(GatewayError) as err:
            await limiter.hit("ip", "198.51.100.7", 3)
        after = time.time()
        assert err.value.status == 429
        # Retry-After: the whole seconds left in this window, rounded up.
        window_end = (before // WINDOW_SECONDS + 1) * WINDOW_SECONDS
        retry_after = int(err.value.headers["Retry-After"])
        assert int(window_end - after) + 1 <= retry_after <= int(window_end - before) + 1
        await limiter.hit("ip", "198.51.100.8", 3)  # another IP has its own count
    finally:
        await limiter.close()


async def test_redis_down_fails_open_or_503() -> None:
    down = "redis://127.0.0.1:1/0"
    open_limiter = RateLimiter(aioredis.Redis.from_url(down, socket_connect_timeout=0.2), "p:", True, 5)
    closed = RateLimiter(aioredis.Redis.from_url(down, socket_connect_timeout=0.2), "p:", False, 5)
    try:
        await open_limiter.hit("ip", "x", 1)
        with pytest.raises(GatewayError) as err:
            await closed.hit("ip", "x", 1)
        assert err.value.status == 503
        assert err.value.headers["Retry-After"] == "5"
    finally:
        await open_limiter.close()
        await closed.close()


async def test_processes_share_the_limit_through_background_syncs(redis_url: str, redis_prefix: str) -> None:
    """Two gateway processes count locally; each sync adds its hits to Redis and learns the other's."""
    prefix = f"{redis_prefix}leadflow:ratelimit:"
    # Its own subject (other tests of this run count tenants under the same prefix), and one
    # one-minute window for the whole exchange.
    subject = f"acme-{uuid.uuid4().hex[:8]}"
    if time.time() % 60 > 50:
        await asyncio.sleep(61 - time.time() % 60)
    a = RateLimiter(aioredis.Redis.from_url(redis_url), prefix, False, 5, sync_seconds=3600)
    b = RateLimiter(aioredis.Redis.from_url(redis_url), prefix, False, 5, sync_seconds=3600)
    try:
        for _ in range(3):
            await a.hit("tenant", subject, 5)
        await a._sync()  # what the background task does every `sync_seconds`
        await b.hit("tenant", subject, 5)  # a new window for b: it starts from Redis's 3
        await b.hit("tenant", subject, 5)
        with pytest.raises(GatewayError) as err:
            await b.hit("tenant", subject, 5)
        assert err.value.status == 429
        await b._sync()
        await a._sync()
        with pytest.raises(GatewayError):
            await a.hit("tenant", subject, 5)  # a learnt b's two hits
    finally:
        await a.close()
        await b.close()


async def test_hits_on_their_way_to_redis_still_count(redis_url: str, redis_prefix: str) -> None:
    """A request that arrives while a sync is in flight sees the hits that sync carries."""
    subject = f"198.51.100.{uuid.uuid4().int % 200}-{uuid.uuid4().hex[:6]}"
    if time.time() % 60 > 50:
        await asyncio.sleep(61 - time.time() % 60)
    limiter = RateLimiter(
        aioredis.Redis.from_url(redis_url), f"{redis_prefix}leadflow:ratelimit:", False, 5, sync_seconds=3600
    )
    try:
        await limiter.hit("ip", subject, 3)  # the window's first hit: synced before it is judged
        await limiter.hit("ip", subject, 3)  # counted locally
        sync = asyncio.get_running_loop().create_task(limiter._sync())
        await asyncio.sleep(0)  # the sync has taken the local hit and waits for Redis
        await limiter.hit("ip", subject, 3)  # the third: allowed
        with pytest.raises(GatewayError) as err:
            await limiter.hit("ip", subject, 3)  # the fourth, while the second is still in flight
        assert err.value.status == 429
        await sync
        with pytest.raises(GatewayError):
            await limiter.hit("ip", subject, 3)
    finally:
        await limiter.close()

"""Abuse limits per source IP and per tenant: fixed one-minute windows, counted in Redis across
gateway processes but without a Redis round trip per request.

Each process counts locally and adds its counts to Redis in one pipeline every
`sync_seconds` (and learns the other processes' counts from the answers). A request is refused
when the window's last known total plus this process's not yet synced hits passes the limit; so
all processes together may overshoot by what they admit within one sync interval. The first
hit of a window for a key waits for Redis, so a fresh process (or one whose Redis is down and
that must fail closed) decides on real numbers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from leadflow_core.logs import get_logger
from leadflow_gateway.errors import rate_limited, unavailable

log = get_logger("leadflow.gateway.ratelimit")

WINDOW_SECONDS = 60


@dataclass
class _Count:
    known: int = 0  # the window's total in Redis at the last sync
    pending: int = 0  # hits of this process not yet added to Redis
    sending: int = 0  # hits on their way to Redis: in neither number until the answer comes

    @property
    def total(self) -> int:
        return self.known + self.sending + self.pending


class RateLimiter:
    def __init__(
        self,
        client: aioredis.Redis,
        key_prefix: str,
        fail_open: bool,
        retry_after: int,
        sync_seconds: float = 0.1,
    ) -> None:
        self._redis = client
        self._prefix = key_prefix
        self._fail_open = fail_open
        self._retry_after = retry_after
        self._sync_seconds = sync_seconds
        self._counts: dict[str, _Count] = {}
        self._redis_ok = True
        self._syncer: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._syncer is not None:
            self._syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncer
            await self._sync()
        await self._redis.aclose()

    async def hit(self, scope: str, subject: str, limit: int) -> None:
        """Count one request; raise 429 with `Retry-After` once `limit` is passed in this window."""
        if limit <= 0:
            return
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = f"{self._prefix}{scope}:{subject[:200]}:{window}"
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = _Count(pending=1)
            await self._sync()  # a new window: start from Redis's total
        else:
            count.pending += 1
            self._start_syncer()
        if not self._redis_ok:
            if self._fail_open:
                return
            raise unavailable("rate limiter unavailable", self._retry_after)
        if count.total > limit:
            count.pending -= 1  # a refused request is not counted
            retry_after = int((window + 1) * WINDOW_SECONDS - now) + 1
            raise rate_limited(retry_after, scope)

    def _start_syncer(self) -> None:
        if self._syncer is None or self._syncer.done():
            self._syncer = asyncio.get_running_loop().create_task(self._sync_forever())

    async def _sync_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sync_seconds)
            await self._sync()

    async def _sync(self) -> None:
        """Add every pending count to Redis in one pipeline; forget windows that have ended."""
        current = int(time.time() // WINDOW_SECONDS)
        for key in [k for k in self._counts if int(k.rsplit(":", 1)[1]) < current]:
            del self._counts[key]
        batch = list(self._counts.items())
        if not batch:
            return
        sent = [(key, count, count.pending) for key, count in batch]
        for _, count, n in sent:
            count.pending -= n
            count.sending += n
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, _, n in sent:
                    pipe.incrby(key, n)
                    pipe.expire(key, WINDOW_SECONDS + 5)
                answers = await pipe.execute()
        except (RedisError, OSError) as err:
            for _, count, n in sent:
                count.sending -= n
                count.pending += n  # retried with the next sync
            if self._redis_ok:
                log.warning("rate_limit_unavailable", error=type(err).__name__)
            self._redis_ok = False
            return
        self._redis_ok = True
        for (_, count, n), total in zip(sent, answers[::2], strict=True):
            count.sending -= n
            # Two syncs may be in flight at once: the later answer holds the larger total.
            count.known = max(count.known, int(total))

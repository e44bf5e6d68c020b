"""Paused queues: kept in PostgreSQL (a Redis flush must not resume them), read by the relay.

A paused queue's work stays in the outbox (state pending): intake still stores leads and
answers 202; nothing of that queue reaches Redis, so no worker dials, until it is resumed.
The relay asks on every pass and on every SubmitLead; the answer is cached for a second. Work
already in Redis when a queue is paused is skipped by the workers (they read the mirror set)
and waits in the outbox like the rest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from leadflow_core import queues
from leadflow_core.clock import now as utcnow
from leadflow_core.logs import get_logger
from leadflow_dispatcher.models import QueuePauseRow

log = get_logger("leadflow.dispatcher.pauses")


def expand(selector: str) -> tuple[str, ...]:
    """ "" is every queue, "dial" every dial queue, else exactly one known queue."""
    if not selector:
        return tuple(queues.ALL_QUEUES)
    if selector == "dial":
        return tuple(queues.DIAL_QUEUES)
    if selector in queues.ALL_QUEUES:
        return (selector,)
    raise ValueError(f"unknown queue {selector!r}; one of: dial, {', '.join(queues.ALL_QUEUES)}")


class QueuePauses:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        cache_seconds: float = 1.0,
        mirror: redis.Redis | None = None,
        mirror_key: str = "",
    ) -> None:
        self.sessions = sessions
        self.cache_seconds = cache_seconds
        # The workers read the paused queues from this Redis set (rewritten at every re-read, so
        # a Redis that lost it learns it again within a second).
        self.mirror = mirror
        self.mirror_key = mirror_key
        self._lock = threading.Lock()
        self._cached: dict[str, str] = {}
        self._read_at = float("-inf")

    def paused(self) -> dict[str, str]:
        """Paused queue -> reason (cached briefly: this sits on the SubmitLead path)."""
        with self._lock:
            if time.monotonic() - self._read_at < self.cache_seconds:
                return self._cached
        with self.sessions() as s:
            rows = s.execute(sa.select(QueuePauseRow.queue, QueuePauseRow.reason)).all()
        fresh = {q: r for q, r in rows}
        self._mirror(fresh)
        with self._lock:
            self._cached, self._read_at = fresh, time.monotonic()
        return fresh

    def _mirror(self, paused: dict[str, str]) -> None:
        if self.mirror is None or not self.mirror_key:
            return
        try:
            pipe = self.mirror.pipeline()
            pipe.delete(self.mirror_key)
            if paused:
                pipe.sadd(self.mirror_key, *paused)
            pipe.execute()
        except redis.RedisError as err:
            log.warning("pause_mirror_failed", error=str(err))

    def pause(self, names: Iterable[str], reason: str, actor: str) -> list[str]:
        now = utcnow()
        with self.sessions.begin() as s:
            for name in names:
                row = s.get(QueuePauseRow, name)
                if row is None:
                    s.add(QueuePauseRow(queue=name, reason=reason, actor=actor, at=now))
        return self._refresh()

    def resume(self, names: Iterable[str]) -> list[str]:
        with self.sessions.begin() as s:
            s.execute(sa.delete(QueuePauseRow).where(QueuePauseRow.queue.in_(list(names))))
        return self._refresh()

    def _refresh(self) -> list[str]:
        with self._lock:
            self._read_at = float("-inf")
        return sorted(self.paused())

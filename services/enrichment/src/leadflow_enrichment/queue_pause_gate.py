"""Paused queues, seen by the workers: a message taken from a queue an operator paused (it was in
Redis before the pause, e.g. a dial waiting out its short delay) is skipped, not run.

Nothing is lost: its outbox job in the dispatcher is unfinished, so once its lease runs out the
dispatcher finds the message gone and keeps the job pending until the queue is resumed. The
dispatcher mirrors its paused queues into the Redis set read here (`queue_pauses`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware, SkipMessage

from leadflow_core.logs import get_logger

log = get_logger("leadflow.worker.pause")


class QueuePauseGate(Middleware):
    def __init__(self, client: redis.Redis, key: str, cache_seconds: float = 1.0) -> None:
        self.client = client
        self.key = key
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._paused: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    def paused(self) -> frozenset[str]:
        with self._lock:
            if time.monotonic() - self._read_at < self.cache_seconds:
                return self._paused
        try:
            members = self.client.smembers(self.key)
            fresh = frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        except redis.RedisError:
            fresh = self._paused  # Redis trouble: keep the last answer (the broker fails anyway)
        with self._lock:
            self._paused, self._read_at = fresh, time.monotonic()
        return fresh

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        queue = str(message.queue_name).removesuffix(".DQ")
        if queue in self.paused():
            log.info("job_skipped_queue_paused", queue=queue, job_id=message.options.get("job_id", ""))
            raise SkipMessage(f"queue {queue} is paused")

"""This worker process's heartbeat in Dramatiq's own heartbeat set.

Dramatiq stamps a worker's heartbeat only when one of its consumers talks to Redis; a consumer
whose prefetch is full (every thread busy) stays silent, so a live but busy worker could look
dead. A small thread stamps the process's broker id every `worker_heartbeat_seconds` instead,
whatever the consumers do. The dispatcher's relay then treats a worker silent for
`worker_heartbeat_timeout_seconds` as dead and puts the messages it had fetched back on their
queues; a SIGKILLed worker's work is back in flight within that timeout, not at Dramatiq's
random maintenance.
"""

from __future__ import annotations

import threading

from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

from leadflow_core.logs import get_logger

log = get_logger("leadflow.worker.heartbeat")


class Heartbeat:
    def __init__(self, broker: RedisBroker, interval_seconds: float) -> None:
        self._broker = broker
        self._key = f"{broker.namespace}:__heartbeats__"
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def beat(self) -> None:
        self._broker.client.zadd(self._key, {self._broker.broker_id: current_millis()})

    def start(self) -> None:
        self.beat()  # before any consumer fetches: never a fetch by an unannounced worker
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.beat()
            except Exception as err:  # Redis away: the consumers cannot fetch either
                log.warning("heartbeat_failed", error=type(err).__name__)

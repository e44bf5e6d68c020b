"""Prometheus metrics of the dispatcher, the HPA's input: queue depth and age per queue.

`leadflow_queue_depth{queue}` is LLEN of `<namespace>:<queue>` (messages no worker has taken);
`leadflow_queue_oldest_age_seconds{queue}` is how long the head of that list has waited.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import redis
from dramatiq import Message
from prometheus_client import REGISTRY, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from leadflow_core import queues
from leadflow_core.logs import get_logger

log = get_logger("leadflow.dispatcher.metrics")

LEADS_SUBMITTED = Counter("leadflow_dispatcher_leads_submitted", "Leads submitted", ["duplicate"])


class QueueCollector(Collector):
    def __init__(self, client: redis.Redis, namespace: str, store: Any) -> None:
        self.client = client
        self.namespace = namespace
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("leadflow_queue_depth", "Messages waiting in a queue", labels=["queue"])
        age = GaugeMetricFamily(
            "leadflow_queue_oldest_age_seconds", "Age of the oldest waiting message", labels=["queue"]
        )
        dead = GaugeMetricFamily(
            "leadflow_queue_dead_letters", "Messages in Dramatiq's .XQ", labels=["queue"]
        )
        try:
            now_ms = time.time() * 1000
            for queue in queues.ALL_QUEUES:
                key = f"{self.namespace}:{queue}"
                pipe = self.client.pipeline()
                pipe.llen(key)
                pipe.lindex(key, 0)
                pipe.zcard(f"{key}.XQ")
                n, head, xq = pipe.execute()
                depth.add_metric([queue], float(n))
                dead.add_metric([queue], float(xq))
                oldest = 0.0
                if head is not None:
                    body = self.client.hget(f"{key}.msgs", head)
                    if isinstance(body, bytes):
                        message = Message.decode(body)
                        stamp = float(message.options.get("eta") or message.message_timestamp)
                        oldest = max(0.0, (now_ms - stamp) / 1000)
                age.add_metric([queue], oldest)
        except redis.RedisError as err:
            log.warning("queue_metrics_unavailable", error=str(err))
        yield depth
        yield age
        yield dead
        try:
            counts = self.store.counts()
        except Exception as err:
            log.warning("outbox_metrics_unavailable", error=str(err))
            return
        outbox = GaugeMetricFamily("leadflow_outbox_jobs", "Accepted work not yet done", labels=["state"])
        for state in ("pending", "queued"):
            outbox.add_metric([state], float(counts.get(f"jobs_{state}", 0)))
        yield outbox
        yield GaugeMetricFamily(
            "leadflow_dead_letters_open", "Open dead letters", value=float(counts.get("dead_letters_open", 0))
        )


def serve_metrics(addr: str, client: redis.Redis, namespace: str, store: Any) -> int:
    """Register the collector and serve /metrics; returns the bound port."""
    REGISTRY.register(QueueCollector(client, namespace, store))
    host, _, port = addr.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "0.0.0.0")
    return int(server.server_port)

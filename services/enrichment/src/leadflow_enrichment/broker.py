"""The workers' Dramatiq broker, built and set here before any actor module is imported.

Never Dramatiq's implicit default broker: `actors` imports this module first.
"""

from __future__ import annotations

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Callbacks, CurrentMessage, Retries, ShutdownNotifications, TimeLimit

from leadflow_core import queues
from leadflow_enrichment.job_metrics import JobMetrics
from leadflow_enrichment.middleware import RequestContext
from leadflow_enrichment.queue_pause_gate import QueuePauseGate
from leadflow_enrichment.settings import WorkerSettings

settings = WorkerSettings()


def _retry_only_when_asked(retries: int, exception: BaseException) -> bool:
    # Actors classify every failure themselves and raise dramatiq.Retry (with the delay the
    # class calls for) when a retry is due; anything else escaping an actor is not retried here.
    return isinstance(exception, dramatiq.Retry)


def build_broker(s: WorkerSettings) -> RedisBroker:
    client = redis.Redis.from_url(s.redis_url, socket_timeout=10.0, socket_connect_timeout=5.0)
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        client=client,
        namespace=s.dramatiq_namespace,
        # Agrees with the dispatcher's dead-worker check; this process beats well within it.
        heartbeat_timeout=s.worker_heartbeat_timeout_ms,
        middleware=[
            AgeLimit(),
            TimeLimit(time_limit=int(s.job_time_limit_seconds * 1000)),
            ShutdownNotifications(),
            Callbacks(),
            Retries(retry_when=_retry_only_when_asked, max_backoff=3_600_000),
            CurrentMessage(),
            RequestContext(),
            JobMetrics(),
            QueuePauseGate(client, s.redis_key("paused_queues")),
        ],
    )
    for queue in queues.ALL_QUEUES:
        broker.declare_queue(queue)
    return broker


broker = build_broker(settings)
dramatiq.set_broker(broker)

"""Worker metrics: job outcomes and durations per queue (Dramatiq middleware), and failures by
class and provider (reported by `handling.run_job`). Labels are queue, actor, job kind, error
class, provider and action: all bounded sets, never a tenant or a lead.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from prometheus_client import Counter, Histogram

JOBS = Counter(
    "leadflow_worker_jobs_total",
    "Jobs a worker finished, by queue, actor and outcome (ok, retry, failed, skipped).",
    ["queue", "actor", "outcome"],
)
JOB_SECONDS = Histogram(
    "leadflow_worker_job_seconds",
    "Time a job ran, by queue and actor.",
    ["queue", "actor"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
FAILURES = Counter(
    "leadflow_worker_failures_total",
    "Job failures by job kind, error class, provider (twilio, salesforce, hubspot, openai, ...) "
    "and what was done (retry, dead_letter, stop).",
    ["job", "error_class", "provider", "action"],
)


def record_failure(job: str, error_class: str, provider: str, action: str) -> None:
    FAILURES.labels(job, error_class, provider or "none", action).inc()


class JobMetrics(Middleware):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._started[message.message_id] = time.perf_counter()

    def _done(self, message: Any, outcome: str) -> None:
        with self._lock:
            start = self._started.pop(message.message_id, None)
        queue = str(message.queue_name).removesuffix(".DQ")
        JOBS.labels(queue, message.actor_name, outcome).inc()
        if start is not None:
            JOB_SECONDS.labels(queue, message.actor_name).observe(time.perf_counter() - start)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is None:
            outcome = "ok"
        elif isinstance(exception, dramatiq.Retry):
            outcome = "retry"
        else:
            outcome = "failed"
        self._done(message, outcome)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._done(message, "skipped")

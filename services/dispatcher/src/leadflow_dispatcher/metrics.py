"""Prometheus metrics of the dispatcher: queues (the HPA's input), the outbox, dead letters, and
each tenant's usage against its limits (read from compliance at scrape time).

`leadflow_queue_depth{queue}` is LLEN of `<namespace>:<queue>` (messages no worker has taken);
`leadflow_queue_oldest_age_seconds{queue}` is how long the head of that list has waited.
Served with /healthz and /readyz on the metrics port, never on the gRPC port.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import redis
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from leadflow.v1 import tenants_pb2_grpc
from leadflow_core import queues
from leadflow_core.logs import get_logger
from leadflow_core.metrics_server import ReadyCheck, bound_port, start_metrics_server
from leadflow_dispatcher import broker_state
from leadflow_dispatcher.tenant_limits import read_tenant_limits

log = get_logger("leadflow.dispatcher.metrics")

LEADS_SUBMITTED = Counter("leadflow_dispatcher_leads_submitted", "Leads submitted", ["duplicate"])


def _gauge(name: str, documentation: str, label: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=[label])


class QueueCollector(Collector):
    def __init__(self, client: redis.Redis, namespace: str, store: Any, pauses: Any = None) -> None:
        self.client = client
        self.namespace = namespace
        self.store = store
        self.pauses = pauses

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = _gauge("leadflow_queue_depth", "Messages waiting in a queue", "queue")
        age = _gauge("leadflow_queue_oldest_age_seconds", "Age of the oldest waiting message", "queue")
        dead = _gauge("leadflow_queue_dead_letters", "Messages in Dramatiq's .XQ", "queue")
        delayed = GaugeMetricFamily(
            "leadflow_queue_delayed",
            "Messages waiting for a short delay (.DQ and prefetched)",
            labels=["queue"],
        )
        in_flight = _gauge("leadflow_queue_in_flight", "Taken by a worker, not yet acknowledged", "queue")
        try:
            for snap in broker_state.snapshot(self.client, self.namespace):
                depth.add_metric([snap.queue], float(snap.depth))
                age.add_metric([snap.queue], snap.oldest_age_seconds)
                dead.add_metric([snap.queue], float(snap.dead))
                delayed.add_metric([snap.queue], float(snap.delayed))
                in_flight.add_metric([snap.queue], float(snap.in_flight))
            yield GaugeMetricFamily(
                "leadflow_workers_live",
                "Worker processes with a heartbeat in the last minute",
                value=float(len(broker_state.live_workers(self.client, self.namespace))),
            )
        except redis.RedisError as err:
            log.warning("queue_metrics_unavailable", error=str(err))
        yield from (depth, age, dead, delayed, in_flight)
        if self.pauses is not None:
            paused = _gauge("leadflow_queue_paused", "1 while an operator paused the queue", "queue")
            try:
                for name in self.pauses.paused():
                    paused.add_metric([name], 1.0)
            except Exception as err:
                log.warning("pause_metrics_unavailable", error=str(err))
            yield paused
        try:
            counts = self.store.counts()
            pending, open_by_queue = self.store.queue_backlog()
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
        by_queue = _gauge("leadflow_queue_dead_letters_open", "Open dead letters by queue", "queue")
        outbox_by_queue = _gauge("leadflow_queue_outbox_pending", "Outbox work not yet in Redis", "queue")
        for queue in queues.ALL_QUEUES:
            by_queue.add_metric([queue], float(open_by_queue.get(queue, 0)))
            outbox_by_queue.add_metric([queue], float(pending.get(queue, 0)))
        yield by_queue
        yield outbox_by_queue


class TenantUsageCollector(Collector):
    """Usage against limits per tenant: the number of tenants bounds the label."""

    def __init__(self, tenants: tenants_pb2_grpc.TenantAdminServiceStub) -> None:
        self.tenants = tenants

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            states = read_tenant_limits(self.tenants, timeout=3.0)
        except grpc.RpcError as err:
            log.warning("tenant_metrics_unavailable", error=str(err.code() if hasattr(err, "code") else err))
            return
        families = {
            "budget_used_ratio": _gauge(
                "leadflow_tenant_budget_used_ratio", "Spend over daily budget", "tenant"
            ),
            "spend": _gauge("leadflow_tenant_spend_today_usd", "Spend today", "tenant"),
            "budget": _gauge("leadflow_tenant_budget_daily_usd", "Daily budget", "tenant"),
            "calls_today": _gauge("leadflow_tenant_calls_today", "Calls today", "tenant"),
            "calls_minute": _gauge("leadflow_tenant_calls_last_minute", "Calls in the last minute", "tenant"),
            "limit_minute": _gauge("leadflow_tenant_calls_per_minute", "Calls per minute allowed", "tenant"),
            "active": _gauge("leadflow_tenant_active_calls", "Calls in progress", "tenant"),
            "paused": _gauge("leadflow_tenant_paused", "1 while the tenant is paused", "tenant"),
        }
        for t in states:
            families["budget_used_ratio"].add_metric([t.tenant], t.budget_used_ratio)
            families["spend"].add_metric([t.tenant], _float(t.spend_today_usd))
            families["budget"].add_metric([t.tenant], _float(t.daily_budget_usd))
            families["calls_today"].add_metric([t.tenant], float(t.calls_today))
            families["calls_minute"].add_metric([t.tenant], float(t.calls_last_minute))
            families["limit_minute"].add_metric([t.tenant], float(t.calls_per_minute))
            families["active"].add_metric([t.tenant], float(t.active_calls))
            families["paused"].add_metric([t.tenant], 1.0 if t.paused else 0.0)
        yield from families.values()


class DependencyCollector(Collector):
    """`leadflow_dependency_up{dependency}`: compliance answers its health check (the alert on
    compliance being unavailable reads this, whatever the scrape job is called)."""

    def __init__(self, compliance_addr: str) -> None:
        self.compliance_addr = compliance_addr

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from leadflow_dispatcher.dependency_health import grpc_serving

        up = _gauge("leadflow_dependency_up", "1 when the dependency answers its health check", "dependency")
        up.add_metric(["compliance"], 1.0 if grpc_serving(self.compliance_addr) else 0.0)
        yield up


def _float(text: str) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0


def serve_metrics(
    addr: str,
    client: redis.Redis,
    namespace: str,
    store: Any,
    pauses: Any = None,
    tenants: tenants_pb2_grpc.TenantAdminServiceStub | None = None,
    ready: ReadyCheck | None = None,
    compliance_addr: str = "",
) -> int:
    """Register the collectors and serve /metrics, /healthz, /readyz; returns the bound port."""
    REGISTRY.register(QueueCollector(client, namespace, store, pauses))
    if tenants is not None:
        REGISTRY.register(TenantUsageCollector(tenants))
    if compliance_addr:
        REGISTRY.register(DependencyCollector(compliance_addr))
    server = start_metrics_server(addr, ready) if ready is not None else start_metrics_server(addr)
    return bound_port(server)

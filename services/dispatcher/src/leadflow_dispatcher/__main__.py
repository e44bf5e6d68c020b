"""`python -m leadflow_dispatcher`: the DispatcherService gRPC server, its relay and /metrics."""

from __future__ import annotations

from leadflow.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    compliance_pb2_grpc,
    dispatcher_pb2,
    dispatcher_pb2_grpc,
    tenants_pb2_grpc,
)
from leadflow_core import tls
from leadflow_core.db import is_sqlite, make_engine, make_sessionmaker
from leadflow_core.grpc_clients import channel
from leadflow_core.grpc_server import create_server, serve_until_signal, write_port_file
from leadflow_core.logs import configure, get_logger
from leadflow_core.tenant_changes import TenantChangeListener
from leadflow_dispatcher.admin_servicer import AdminServicer
from leadflow_dispatcher.event_delivery import EventDeliverer
from leadflow_dispatcher.metrics import serve_metrics
from leadflow_dispatcher.policies import PolicyView, TenantPolicies
from leadflow_dispatcher.queue_pauses import QueuePauses
from leadflow_dispatcher.queueing import make_broker
from leadflow_dispatcher.relay import Relay
from leadflow_dispatcher.request_log_sweeper import RequestLogSweeper
from leadflow_dispatcher.servicer import DispatcherServicer
from leadflow_dispatcher.settings import DispatcherSettings
from leadflow_dispatcher.store import Store


def tenant_change_listener(settings: DispatcherSettings, store: Store) -> TenantChangeListener | None:
    """Release a tenant's deferred dials as soon as compliance announces a change to it."""
    if not TenantChangeListener.supported(settings.database_url):
        return None  # SQLite (local runs): deferred dials wait for their recheck
    log = get_logger("leadflow.dispatcher.release")

    def on_change(tenant: str | None) -> None:
        if tenant is None:
            return  # (re)connected: what changed meanwhile is picked up by each dial's recheck
        if ":" in tenant:
            return  # other notes on the channel ("api-key:<id>"); tenant names have no colon
        try:
            released = store.release_deferred(tenant, settings.release_after_seconds)
        except Exception:
            log.exception("release_deferred_failed", tenant=tenant)
            return
        if released:
            log.info("deferred_dials_released", tenant=tenant, count=released)

    listener = TenantChangeListener(settings.database_url, on_change)
    listener.start()
    return listener


def main() -> None:
    settings = DispatcherSettings()
    configure("dispatcher", settings.log_level)
    tls.set_component("dispatcher")
    log = get_logger("leadflow.dispatcher")
    # Hot RPC path: no ping round trip per checkout (see make_engine).
    engine = make_engine(settings.database_url, pre_ping=False)
    store = Store(make_sessionmaker(engine), postgres=not is_sqlite(settings.database_url))
    broker = make_broker(
        settings.redis_url, settings.dramatiq_namespace, settings.worker_heartbeat_timeout_ms
    )
    compliance_channel = channel(settings.compliance_addr)
    compliance = compliance_pb2_grpc.ComplianceServiceStub(compliance_channel)
    pauses = QueuePauses(store.sessions, mirror=broker.client, mirror_key=settings.redis_key("paused_queues"))
    relay = Relay(store, broker, compliance, settings, pauses)
    policies = TenantPolicies(
        settings.compliance_addr,
        PolicyView(
            max_dial_attempts=settings.default_max_dial_attempts,
            retry_backoff_seconds=settings.default_retry_backoff_seconds,
            merge_window_seconds=settings.merge_window_seconds,
            request_log_retention_days=settings.request_log_retention_days,
        ),
        settings.policy_cache_seconds,
    )
    servicer = DispatcherServicer(store, relay, policies, settings)
    # AdminService lives here: the dispatcher owns leads, jobs and the queues it reports on.
    admin = AdminServicer(
        store,
        pauses,
        broker.client,
        tenants_pb2_grpc.TenantAdminServiceStub(compliance_channel),
        compliance,
        settings,
    )
    metrics_port = serve_metrics(
        settings.dispatcher_metrics_addr,
        broker.client,
        settings.dramatiq_namespace,
        store,
        pauses,
        tenants_pb2_grpc.TenantAdminServiceStub(compliance_channel),
        compliance_addr=settings.compliance_addr,
    )
    write_port_file(settings.metrics_port_file, metrics_port)
    relay.start()
    changes = tenant_change_listener(settings, store)
    sweeper = RequestLogSweeper(store, policies, settings.request_log_sweep_seconds)
    sweeper.start()
    deliverer = EventDeliverer(store, tenants_pb2_grpc.TenantAdminServiceStub(compliance_channel), settings)
    deliverer.start()
    running = create_server(
        settings.dispatcher_addr,
        [
            lambda server: dispatcher_pb2_grpc.add_DispatcherServiceServicer_to_server(servicer, server),
            lambda server: admin_pb2_grpc.add_AdminServiceServicer_to_server(admin, server),
        ],
        [
            dispatcher_pb2.DESCRIPTOR.services_by_name["DispatcherService"].full_name,
            admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
        ],
    )
    log.info("dispatcher_started", port=running.port, metrics_port=metrics_port)
    write_port_file(settings.port_file, running.port)

    def on_stop() -> None:
        if changes is not None:
            changes.stop()
        relay.stop()
        sweeper.stop()
        deliverer.stop()
        engine.dispose()

    serve_until_signal(running, settings.shutdown_grace_seconds, on_stop)


if __name__ == "__main__":
    main()

"""Tenant policies (dial delays, call retries) read from compliance, the tenants' one source of truth.

Cached briefly; when compliance cannot answer, the deployment's defaults apply so that storing a
lead never depends on it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import grpc

from leadflow.v1 import tenant_pb2, tenants_pb2, tenants_pb2_grpc
from leadflow_core.grpc_clients import channel
from leadflow_core.logs import get_logger

log = get_logger("leadflow.dispatcher.policies")


@dataclass(frozen=True)
class PolicyView:
    dial_delay_seconds: dict[str, int] = field(default_factory=dict)
    max_dial_attempts: int = 3
    retry_backoff_seconds: int = 600
    merge_window_seconds: float = 86_400.0
    request_log_retention_days: int = 7
    # (endpoint name, the event types it takes): who gets which events; none costs no rows.
    event_endpoints: tuple[tuple[str, frozenset[str]], ...] = ()

    def subscribers(self, event_type: str) -> list[str]:
        return [name for name, types in self.event_endpoints if event_type in types]


class TenantPolicies:
    def __init__(self, compliance_addr: str, defaults: PolicyView, ttl_seconds: float) -> None:
        self._stub = tenants_pb2_grpc.TenantAdminServiceStub(channel(compliance_addr, default_timeout=2.0))
        self._defaults = defaults
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, PolicyView]] = {}
        self._lock = threading.Lock()

    def get(self, tenant: str) -> PolicyView:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(tenant)
        if hit is not None and hit[0] > now:
            return hit[1]
        view, ttl = self._fetch(tenant)
        with self._lock:
            self._cache[tenant] = (now + ttl, view)
        return view

    def _fetch(self, tenant: str) -> tuple[PolicyView, float]:
        try:
            reply = self._stub.GetTenant(tenants_pb2.GetTenantRequest(name=tenant))
        except grpc.RpcError as err:
            log.warning("tenant_policy_unavailable", tenant=tenant, code=str(err.code()))
            # Retry the read soon, but not on every lead while compliance is down.
            return self._defaults, min(self._ttl, 5.0)
        policy = reply.tenant.policy
        return (
            PolicyView(
                dial_delay_seconds=dict(policy.dial_delay_seconds),
                max_dial_attempts=policy.max_dial_attempts or self._defaults.max_dial_attempts,
                retry_backoff_seconds=(
                    policy.retry_backoff_seconds
                    if policy.retry_backoff_seconds
                    else self._defaults.retry_backoff_seconds
                ),
                merge_window_seconds=(
                    float(policy.merge_window_seconds)
                    if policy.HasField("merge_window_seconds")
                    else self._defaults.merge_window_seconds
                ),
                request_log_retention_days=(
                    policy.request_log_retention_days
                    if policy.HasField("request_log_retention_days")
                    else self._defaults.request_log_retention_days
                ),
                event_endpoints=event_endpoints(reply.tenant),
            ),
            self._ttl,
        )


def event_endpoints(tenant: tenant_pb2.Tenant) -> tuple[tuple[str, frozenset[str]], ...]:
    """Endpoints are stored as provider configs "events.<name>" (options url and events)."""
    return tuple(
        sorted(
            (kind.removeprefix("events."), frozenset(filter(None, cfg.options.get("events", "").split(","))))
            for kind, cfg in tenant.provider_configs.items()
            if kind.startswith("events.")
        )
    )

"""What every job needs, built once per worker process: stubs to our services, providers, Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import redis

from leadflow.v1 import (
    batch_pb2,
    compliance_pb2_grpc,
    dispatcher_pb2,
    dispatcher_pb2_grpc,
    tenants_pb2,
    tenants_pb2_grpc,
)
from leadflow_core.batcher import BlockingBatcher
from leadflow_core.grpc_clients import channel
from leadflow_enrichment.breaker import BreakerConfig, CircuitBreaker, CleanBreakers
from leadflow_enrichment.lanes import urgent_lane
from leadflow_enrichment.limits import Limiters, ProviderLimits
from leadflow_enrichment.providers.registry import ProviderRegistry
from leadflow_enrichment.retry_policy import RetrySchedule
from leadflow_enrichment.settings import WorkerSettings


@dataclass
class ProviderConfigs:
    """Tenants' provider configs from compliance, cached briefly; None when the tenant has none
    (the deployment's default provider is used then). Compliance failing to answer is an error
    the job retries: it never silently switches a tenant to another provider."""

    stub: tenants_pb2_grpc.TenantAdminServiceStub
    ttl: float
    _cache: dict[tuple[str, str], tuple[float, tenants_pb2.GetProviderConfigResponse | None]] = field(
        default_factory=dict
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(
        self, tenant: str, kind: str, fresh: bool = False
    ) -> tenants_pb2.GetProviderConfigResponse | None:
        """`fresh`: skip the cache (a replayed job, whose config was likely just fixed); the
        answer still refreshes the cache for the jobs after it."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get((tenant, kind))
        if hit is not None and hit[0] > now and not fresh:
            return hit[1]
        config: tenants_pb2.GetProviderConfigResponse | None
        try:
            config = self.stub.GetProviderConfig(
                tenants_pb2.GetProviderConfigRequest(tenant=tenant, kind=kind)
            )
            ttl = self.ttl
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
            config, ttl = None, min(self.ttl, 5.0)
        with self._lock:
            self._cache[(tenant, kind)] = (now + ttl, config)
        return config


_CODES = {c.value[0]: c for c in grpc.StatusCode}


class ItemRpcError(grpc.RpcError):
    """One item's failure inside a batch RPC, raised like the single call's error would be."""

    def __init__(self, error: batch_pb2.ItemError) -> None:
        super().__init__(error.message)
        self._code = _CODES.get(error.code, grpc.StatusCode.UNKNOWN)
        self._details = error.message

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class _Hops:
    """The dispatcher RPCs the jobs batch: GetLeads, RecordEvents, StartDials, CompleteDials."""

    def __init__(
        self, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, settings: WorkerSettings
    ) -> None:
        self._dispatcher = dispatcher
        size, wait = settings.batch_max_size, settings.batch_max_wait_seconds
        self.leads: BlockingBatcher[dispatcher_pb2.GetLeadRequest, dispatcher_pb2.GetLeadResponse] = (
            BlockingBatcher(self._get_leads, size, wait)
        )
        self.reports: BlockingBatcher[dispatcher_pb2.RecordEventRequest, bool] = BlockingBatcher(
            self._record_events, size, wait
        )
        self.starts: BlockingBatcher[
            dispatcher_pb2.ClaimDialAttemptRequest, dispatcher_pb2.StartDialsResponse.Item
        ] = BlockingBatcher(self._start_dials, size, wait)
        self.completions: BlockingBatcher[dispatcher_pb2.CompleteDialAttemptRequest, None] = BlockingBatcher(
            self._complete_dials, size, wait
        )

    def _start_dials(
        self, requests: Sequence[dispatcher_pb2.ClaimDialAttemptRequest]
    ) -> list[dispatcher_pb2.StartDialsResponse.Item | BaseException]:
        reply = self._dispatcher.StartDials(dispatcher_pb2.StartDialsRequest(attempts=requests))
        return [ItemRpcError(i.error) if i.HasField("error") else i for i in reply.items]

    def _complete_dials(
        self, requests: Sequence[dispatcher_pb2.CompleteDialAttemptRequest]
    ) -> list[BaseException | None]:
        reply = self._dispatcher.CompleteDials(dispatcher_pb2.CompleteDialsRequest(attempts=requests))
        return [ItemRpcError(i.error) if i.HasField("error") else None for i in reply.items]

    def _get_leads(
        self, requests: Sequence[dispatcher_pb2.GetLeadRequest]
    ) -> list[dispatcher_pb2.GetLeadResponse | BaseException]:
        reply = self._dispatcher.GetLeads(dispatcher_pb2.GetLeadsRequest(leads=requests))
        return [ItemRpcError(i.error) if i.HasField("error") else i.lead for i in reply.items]

    def _record_events(
        self, requests: Sequence[dispatcher_pb2.RecordEventRequest]
    ) -> list[bool | BaseException]:
        reply = self._dispatcher.RecordEvents(dispatcher_pb2.RecordEventsRequest(events=requests))
        return [ItemRpcError(i.error) if i.HasField("error") else i.recorded for i in reply.items]

    def close(self) -> None:
        for batcher in (self.leads, self.reports, self.starts, self.completions):
            batcher.close()


class WorkerContext:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.dispatcher = dispatcher_pb2_grpc.DispatcherServiceStub(
            channel(settings.dispatcher_addr, settings.rpc_timeout_seconds)
        )
        compliance_channel = channel(settings.compliance_addr, settings.rpc_timeout_seconds)
        self.compliance = compliance_pb2_grpc.ComplianceServiceStub(compliance_channel)
        self.configs = ProviderConfigs(
            tenants_pb2_grpc.TenantAdminServiceStub(compliance_channel),
            settings.provider_config_cache_seconds,
        )
        # Worker threads reading leads or reporting at the same moment share one RPC; urgent
        # dials in batches of their own, never behind a bulk batch in flight.
        self._lanes = {urgent: _Hops(self.dispatcher, settings) for urgent in (False, True)}
        self.registry = ProviderRegistry(settings)
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self.limiters = Limiters(self.redis, settings.redis_key("limits"), settings.job_time_limit_seconds)
        self.breaker_config = BreakerConfig(
            threshold=settings.breaker_failure_threshold,
            window_seconds=settings.breaker_window_seconds,
            open_seconds=settings.breaker_open_seconds,
            probe_poll_seconds=settings.breaker_probe_poll_seconds,
        )
        self.clean_breakers = CleanBreakers(settings.breaker_cache_seconds)
        self.default_schedule = RetrySchedule(
            max_retries=settings.max_retries,
            base_seconds=settings.retry_base_seconds,
            max_seconds=settings.retry_max_seconds,
            system_max_retries=settings.system_max_retries,
        )

    @property
    def _hops(self) -> _Hops:
        return self._lanes[urgent_lane.get()]

    def get_lead(self, tenant: str, lead_id: str) -> dispatcher_pb2.GetLeadResponse:
        return self._hops.leads.call(dispatcher_pb2.GetLeadRequest(tenant=tenant, lead_id=lead_id))

    def record_event(self, request: dispatcher_pb2.RecordEventRequest) -> bool:
        """Record a report (in a batch with other threads' reports); False: recorded before."""
        return self._hops.reports.call(request)

    def start_dial(
        self, request: dispatcher_pb2.ClaimDialAttemptRequest
    ) -> dispatcher_pb2.StartDialsResponse.Item:
        """Claim the attempt and have compliance gate and reserve it (one hop, batched)."""
        return self._hops.starts.call(request)

    def complete_dial(self, request: dispatcher_pb2.CompleteDialAttemptRequest) -> None:
        self._hops.completions.call(request)

    def breaker(self, tenant: str, provider: str) -> CircuitBreaker:
        return CircuitBreaker(
            self.redis, self.settings.redis_key("breaker", tenant, provider), self.breaker_config
        )

    def limits(self, provider: str, options: dict[str, str]) -> ProviderLimits:
        return ProviderLimits.resolve(
            provider, options, self.settings.provider_concurrency, self.settings.provider_rate_per_second
        )

    def schedule(self, config: tenants_pb2.GetProviderConfigResponse | None) -> RetrySchedule:
        options = dict(config.config.options) if config is not None else {}
        return RetrySchedule.from_options(options, self.default_schedule)

    def callback_url(self, tenant: str) -> str:
        return f"{self.settings.callback_base}/v1/calls/{tenant}/status"

    def close(self) -> None:
        for hops in self._lanes.values():
            hops.close()
        self.registry.close()


_context: WorkerContext | None = None
_context_lock = threading.Lock()


def get_context() -> WorkerContext:
    """One context per process, built on first use (after the worker has forked)."""
    global _context
    with _context_lock:
        if _context is None:
            _context = WorkerContext(WorkerSettings())
        return _context

"""The gateway's only state-holders are other services: compliance and dispatcher over grpc.aio."""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from leadflow.v1 import (
    compliance_pb2,
    compliance_pb2_grpc,
    decision_pb2,
    dispatcher_pb2,
    dispatcher_pb2_grpc,
    inbound_pb2,
    lead_pb2,
    tenant_pb2,
    tenants_pb2,
    tenants_pb2_grpc,
)
from leadflow_core.grpc_clients import aio_channel, request_metadata
from leadflow_core.grpc_errors import field_violations
from leadflow_core.logs import get_logger
from leadflow_gateway.ascii_text import is_digits
from leadflow_gateway.batched_hops import BatchedHops
from leadflow_gateway.errors import GatewayError, bad_request, not_found, unauthenticated, unavailable
from leadflow_gateway.metrics import DEPENDENCY

log = get_logger("leadflow.gateway.backends")

_UNAVAILABLE_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}


@dataclass(frozen=True)
class AuthenticatedKey:
    tenant: str
    key_id: str
    # "ingest" (submit leads), "read" (read them back).
    scopes: frozenset[str]


@dataclass(frozen=True)
class SourceContext:
    """A tenant's enabled source: its secrets and options, and the tenant's policy."""

    tenant: str
    source: str
    config: tenant_pb2.SourceConfig
    policy: tenant_pb2.TenantPolicy

    def secret(self, *names: str) -> str:
        """The first secret set under one of `names`, else the source's single `secret`."""
        for name in (*names, "secret"):
            value = self.config.secrets.get(name, "")
            if value:
                return value
        return ""

    def secrets_with_prefix(self, prefix: str) -> list[str]:
        return [v for k, v in sorted(self.config.secrets.items()) if k.startswith(prefix) and v]

    def option(self, name: str, default: str = "") -> str:
        return self.config.options.get(name, default)

    def option_list(self, name: str) -> list[str]:
        return [p.strip() for p in self.option(name).replace("\n", ",").split(",") if p.strip()]

    def option_int(self, name: str, default: int) -> int:
        raw = self.option(name)
        return int(raw.strip()) if is_digits(raw.strip()) and len(raw.strip()) <= 12 else default


def rpc_error(err: grpc.aio.AioRpcError, what: str, retry_after: int) -> GatewayError:
    return status_error(err.code(), err.details() or "", field_violations(err), what, retry_after)


def status_error(
    code: grpc.StatusCode | None,
    details: str,
    violations: list[tuple[str, str]],
    what: str,
    retry_after: int,
) -> GatewayError:
    """A service's status as the HTTP answer (also for one item of a batch call)."""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, why = violations[0] if violations else ("body", details or "invalid")
        return bad_request(field, why)
    if code == grpc.StatusCode.NOT_FOUND:
        return not_found(details or f"{what}: not found")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return unauthenticated(details or "not allowed")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        # Compliance's one precondition is an active tenant: a deactivated tenant is unknown to senders.
        return not_found(details or f"{what}: tenant not active")
    log.warning("dependency_failed", call=what, code=code.name if code else "", details=details)
    return unavailable(f"{what} is unavailable, retry later", retry_after)


class Backends:
    """Stubs over two long-lived channels, with a short cache of source configs."""

    def __init__(
        self,
        compliance_addr: str,
        dispatcher_addr: str,
        timeout: float,
        cache_seconds: float,
        retry_after: int,
        batch_max_size: int = 64,
        batch_delay_seconds: float = 0.002,
        batch_max_in_flight: int = 0,
    ) -> None:
        self._compliance_channel = aio_channel(compliance_addr)
        self._dispatcher_channel = aio_channel(dispatcher_addr)
        self._compliance = compliance_pb2_grpc.ComplianceServiceStub(self._compliance_channel)
        self._tenants = tenants_pb2_grpc.TenantAdminServiceStub(self._compliance_channel)
        self._dispatcher = dispatcher_pb2_grpc.DispatcherServiceStub(self._dispatcher_channel)
        self._health = (
            health_pb2_grpc.HealthStub(self._compliance_channel),
            health_pb2_grpc.HealthStub(self._dispatcher_channel),
        )
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.retry_after = retry_after
        self._sources: dict[tuple[str, str], tuple[float, SourceContext | None]] = {}
        self._hops = BatchedHops(
            self._compliance,
            self._dispatcher,
            self._tenants,
            timeout,
            lambda code, details, violations, what: status_error(
                code, details, violations, what, retry_after
            ),
            self._error,
            batch_max_size,
            batch_delay_seconds,
            batch_max_in_flight,
        )

    @property
    def dispatcher(self) -> dispatcher_pb2_grpc.DispatcherServiceAsyncStub:
        return self._dispatcher

    async def claim_replay(self, grant: str) -> inbound_pb2.InboundRequest | None:
        """The logged request an operator's replay grant names; None when unknown, spent or lapsed."""
        try:
            return await self._dispatcher.ClaimReplay(
                dispatcher_pb2.ClaimReplayRequest(grant=grant),
                timeout=self.timeout,
                metadata=request_metadata(),
            )
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise self._error(err, "dispatcher") from err

    async def close(self) -> None:
        await self._hops.close()
        await self._compliance_channel.close()
        await self._dispatcher_channel.close()

    def _error(self, err: grpc.aio.AioRpcError, what: str) -> GatewayError:
        return rpc_error(err, what, self.retry_after)

    async def source(self, tenant: str, source: str) -> SourceContext | None:
        """The source's config, or None when the tenant is unknown, inactive or lacks the source."""
        key = (tenant, source)
        now = time.monotonic()
        hit = self._sources.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            with DEPENDENCY.labels(call="source_config").time():
                resp = await self._tenants.GetSourceConfig(
                    tenants_pb2.GetSourceConfigRequest(tenant=tenant, source=source),
                    timeout=self.timeout,
                    metadata=request_metadata(),
                )
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                # Unknown names are cached briefly too, so a flood of them does not reach compliance.
                self._remember(key, now + min(self.cache_seconds, 2.0), None)
                return None
            raise self._error(err, "tenant configuration") from err
        ctx = SourceContext(tenant, source, resp.config, resp.policy) if resp.tenant_active else None
        self._remember(key, now + self.cache_seconds, ctx)
        return ctx

    async def tenant_defaults(self, tenant: str, source: str) -> SourceContext | None:
        """A context with no source settings, only the tenant's policy; None for an unknown tenant."""
        key = (tenant, "tenant:" + source)
        now = time.monotonic()
        hit = self._sources.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            resp = await self._tenants.GetTenant(
                tenants_pb2.GetTenantRequest(name=tenant), timeout=self.timeout, metadata=request_metadata()
            )
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                self._remember(key, now + min(self.cache_seconds, 2.0), None)
                return None
            raise self._error(err, "tenant configuration") from err
        t = resp.tenant
        ctx = SourceContext(tenant, source, tenant_pb2.SourceConfig(), t.policy) if t.active else None
        self._remember(key, now + self.cache_seconds, ctx)
        return ctx

    def _remember(self, key: tuple[str, str], until: float, ctx: SourceContext | None) -> None:
        if len(self._sources) > 10_000:
            self._sources.clear()
        self._sources[key] = (until, ctx)

    async def authenticate(self, api_key: str) -> AuthenticatedKey | None:
        """The tenant and scopes of the bearer key, or None.

        Asked of compliance on every request (concurrent requests share one call), never cached
        here: compliance keeps verified keys in memory (no scrypt, no SQL on a hit) and drops a
        revoked one at once in every process, which a cache in the gateway could not."""
        resp = await self._hops.authenticate(api_key)
        if not resp.tenant:
            return None
        return AuthenticatedKey(resp.tenant, resp.key_id, frozenset(resp.scopes))

    async def evaluate(self, lead: lead_pb2.Lead) -> decision_pb2.Decision:
        """Through `BatchedHops`: concurrent leads share one EvaluateBatch call."""
        return await self._hops.evaluate(
            compliance_pb2.EvaluateRequest(
                lead=lead, purpose=compliance_pb2.EVALUATION_PURPOSE_INGEST, actor="gateway"
            )
        )

    async def submit(
        self, lead: lead_pb2.Lead, decision: decision_pb2.Decision
    ) -> dispatcher_pb2.SubmitLeadResponse:
        """Through `BatchedHops`: concurrent leads share one SubmitLeads call and transaction."""
        return await self._hops.submit(dispatcher_pb2.SubmitLeadRequest(lead=lead, decision=decision))

    async def find_leads(
        self, tenant: str, source: lead_pb2.Source.ValueType, vendor_ids: list[str]
    ) -> dict[str, dispatcher_pb2.SubmitLeadResponse]:
        """Leads already stored under these sender ids (as a duplicate submit would answer)."""
        if not vendor_ids:
            return {}
        try:
            with DEPENDENCY.labels(call="find_leads").time():
                resp = await self._dispatcher.FindLeads(
                    dispatcher_pb2.FindLeadsRequest(tenant=tenant, source=source, vendor_lead_ids=vendor_ids),
                    timeout=self.timeout,
                    metadata=request_metadata(),
                )
        except grpc.aio.AioRpcError as err:
            raise self._error(err, "dispatcher") from err
        return {f.vendor_lead_id: f.lead for f in resp.found}

    async def timeline(self, tenant: str, lead_id: str) -> dispatcher_pb2.GetTimelineResponse:
        try:
            with DEPENDENCY.labels(call="timeline").time():
                return await self._dispatcher.GetTimeline(
                    dispatcher_pb2.GetTimelineRequest(tenant=tenant, lead_id=lead_id),
                    timeout=self.timeout,
                    metadata=request_metadata(),
                )
        except grpc.aio.AioRpcError as err:
            raise self._error(err, "dispatcher") from err

    async def record_call_status(
        self, request: dispatcher_pb2.RecordCallStatusRequest
    ) -> dispatcher_pb2.RecordCallStatusResponse:
        """Through `BatchedHops`: concurrent callbacks share one RecordCallStatuses call."""
        return await self._hops.record_call_status(request)

    async def revocation_signal(
        self, request: compliance_pb2.RevocationSignalRequest
    ) -> compliance_pb2.RevocationSignalResponse:
        try:
            with DEPENDENCY.labels(call="revocation_signal").time():
                return await self._compliance.RecordRevocationSignal(
                    request, timeout=self.timeout, metadata=request_metadata()
                )
        except grpc.aio.AioRpcError as err:
            raise self._error(err, "compliance") from err

    async def claim_confirmation(
        self, tenant: str, revocation_id: str, actor: str
    ) -> compliance_pb2.ClaimRevocationConfirmationResponse:
        try:
            return await self._compliance.ClaimRevocationConfirmation(
                compliance_pb2.ClaimRevocationConfirmationRequest(
                    tenant=tenant, revocation_id=revocation_id, actor=actor
                ),
                timeout=self.timeout,
                metadata=request_metadata(),
            )
        except grpc.aio.AioRpcError as err:
            raise self._error(err, "compliance") from err

    async def ready(self) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for name, stub in zip(("compliance", "dispatcher"), self._health, strict=True):
            try:
                resp = await stub.Check(  # type: ignore[attr-defined]
                    health_pb2.HealthCheckRequest(), timeout=min(self.timeout, 2.0)
                )
                out[name] = resp.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.aio.AioRpcError:
                out[name] = False
        return out

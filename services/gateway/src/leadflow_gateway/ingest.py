"""The path every lead takes after its sender is verified: evaluate, store, answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from leadflow.v1 import decision_pb2, dispatcher_pb2, lead_pb2
from leadflow_core import timestamps
from leadflow_core.logs import get_logger
from leadflow_core.request_context import tenant_var
from leadflow_core.tenant_spec import NAME_RE
from leadflow_gateway import request_log
from leadflow_gateway.ascii_text import check_id
from leadflow_gateway.backends import Backends, SourceContext
from leadflow_gateway.errors import GatewayError, bad_request, not_found, unauthenticated
from leadflow_gateway.meta_graph import MetaGraphClient
from leadflow_gateway.metrics import LEADS
from leadflow_gateway.ratelimit import RateLimiter
from leadflow_gateway.settings import GatewaySettings
from leadflow_gateway.source_ranges import check_network

log = get_logger("leadflow.gateway.ingest")

_DIAL_STATES = {
    dispatcher_pb2.DIAL_STATE_SCHEDULED: "scheduled",
    dispatcher_pb2.DIAL_STATE_DEFERRED: "deferred",
    dispatcher_pb2.DIAL_STATE_BLOCKED: "blocked",
    dispatcher_pb2.DIAL_STATE_DIALING: "dialing",
    dispatcher_pb2.DIAL_STATE_DIALED: "dialed",
}
_SOURCE_NAMES = {
    lead_pb2.SOURCE_API: "api",
    lead_pb2.SOURCE_FORM: "form",
    lead_pb2.SOURCE_META: "meta",
    lead_pb2.SOURCE_HUBSPOT: "hubspot",
    lead_pb2.SOURCE_SALESFORCE: "salesforce",
    lead_pb2.SOURCE_ZAPIER: "zapier",
    lead_pb2.SOURCE_MARKETO: "marketo",
    lead_pb2.SOURCE_GOOGLE: "google",
}
TEST_LEAD_RULE = "lead.is_test"
PHONE_RULE = "phone.invalid"
# Compliance names the lead's phone like this when it refuses to evaluate it.
PHONE_FIELD = "lead.contact.phone"


@dataclass(frozen=True)
class Stored:
    lead_id: str
    duplicate: bool
    response: dispatcher_pb2.SubmitLeadResponse

    def answer(self) -> dict[str, Any]:
        at = timestamps.from_proto(self.response.dial_at) if self.response.HasField("dial_at") else None
        return {
            "lead_id": self.lead_id,
            "duplicate": self.duplicate,
            # A repeat of the same person and campaign merged into lead_id (no new lead, no call).
            "merged": self.response.merged,
            "dial": {
                "state": _DIAL_STATES.get(self.response.dial_state, "unknown"),
                "at": at.isoformat().replace("+00:00", "Z") if at else None,
                "reasons": [
                    {"rule_id": r.rule_id, "message": r.message, "statute": r.statute}
                    for r in self.response.reasons
                ],
            },
        }


def _check_network(ctx: SourceContext, request: Request) -> None:
    # A replay comes from the dispatcher for an operator; the sender's network was checked when
    # the request first arrived (request_log.check_sender skips sender checks the same way).
    if request_log.replaying() is None:
        check_network(ctx, request)


def _named(tenant: str) -> None:
    """A tenant name as the URL gives it: 404 unless it could name one; then it is logged."""
    check_id("tenant", tenant)
    if not NAME_RE.fullmatch(tenant):
        raise not_found("unknown tenant or source")
    tenant_var.set(tenant)


class Gateway:
    """What every source handler needs: settings, the two services, limits, the Graph client."""

    def __init__(
        self, settings: GatewaySettings, backends: Backends, limiter: RateLimiter, graph: MetaGraphClient
    ) -> None:
        self.settings = settings
        self.backends = backends
        self.limiter = limiter
        self.graph = graph
        self.recorder = request_log.RequestRecorder(backends.dispatcher, settings.gateway_rpc_timeout_seconds)

    async def close(self) -> None:
        await self.recorder.close()
        await self.backends.close()
        await self.limiter.close()
        await self.graph.close()

    async def limit_ip(self, request: Request) -> None:
        ip = request.client.host if request.client else "unknown"
        await self.limiter.hit("ip", ip, self.settings.rate_limit_ip_per_minute)

    async def admit(self, tenant: str, source: str, request: Request) -> SourceContext:
        """Tenant limit, then the source's config: 404 for an unknown tenant or a source not enabled,
        403 for a sender outside the source's `allowedSourceRanges`."""
        _named(tenant)
        await self.limiter.hit("tenant", tenant, self.settings.rate_limit_tenant_per_minute)
        ctx = await self._source(tenant, source, request)
        per_source = ctx.option_int("rate_limit_per_minute", 0)
        if per_source:
            await self.limiter.hit(f"source:{source}", tenant, per_source)
        return ctx

    async def source_context(self, tenant: str, source: str, request: Request) -> SourceContext:
        """`admit` without counting the request against any limit."""
        _named(tenant)
        return await self._source(tenant, source, request)

    async def _source(self, tenant: str, source: str, request: Request) -> SourceContext:
        ctx = await self.backends.source(tenant, source)
        if ctx is None:
            raise not_found("unknown tenant or source")
        request_log.identified(tenant, source)
        _check_network(ctx, request)
        return ctx

    async def admit_api(self, tenant: str, request: Request) -> SourceContext:
        """The direct API's context: the tenant's `api` source if it has one, else just its policy."""
        tenant_var.set(tenant)
        await self.limiter.hit("tenant", tenant, self.settings.rate_limit_tenant_per_minute)
        ctx = await self.backends.source(tenant, "api")
        if ctx is None:
            ctx = await self.backends.tenant_defaults(tenant, "api")
        if ctx is None:
            raise unauthenticated("the API key's tenant is not active")
        request_log.identified(tenant, "api")
        _check_network(ctx, request)
        return ctx

    def body_limit(self, ctx: SourceContext, default: int | None = None) -> int:
        base = default if default is not None else self.settings.max_body_bytes
        return ctx.option_int("max_body_bytes", base)

    async def store(self, lead: lead_pb2.Lead, strict: bool = True) -> Stored:
        """Compliance decides, the dispatcher stores; a failure of either is a 503 and nothing is kept
        half-way (the dispatcher stores lead and decision in one transaction).

        A vendor's lead whose number cannot be dialed is still kept (compliance gates dialing, not
        ingestion), with a never-dial decision; our own API and forms get a 400 instead (`strict`)."""
        if not lead.contact.phone.e164 and not strict:
            decision = _never(PHONE_RULE, "no dialable phone number")
        else:
            try:
                decision = await self.backends.evaluate(lead)
            except GatewayError as err:
                if err.status != 400 or not (err.field or "").startswith(PHONE_FIELD):
                    raise
                if strict:
                    raise bad_request("phone", err.message) from err
                decision = _never(PHONE_RULE, err.message)
        if lead.is_test:
            decision = _never_dial_tests(decision)
        resp = await self.backends.submit(lead, decision)
        request_log.stored(resp.lead_id)
        source = _SOURCE_NAMES.get(lead.source, "unknown")
        LEADS.labels(source=source, outcome="duplicate" if resp.duplicate else "accepted").inc()
        log.info(
            "lead_stored",
            lead_id=resp.lead_id,
            source=source,
            duplicate=resp.duplicate,
            urgency=lead_pb2.Urgency.Name(lead.urgency),
            dial_state=_DIAL_STATES.get(resp.dial_state, "unknown"),
        )
        return Stored(resp.lead_id, resp.duplicate, resp)

    async def store_all(
        self, leads: Iterable[lead_pb2.Lead], concurrency: int = 8, strict: bool = False
    ) -> list[Stored]:
        """Several leads of one delivery; any failure fails the delivery (the sender retries and the
        leads already stored come back as duplicates)."""
        gate = asyncio.Semaphore(concurrency)

        async def one(lead: lead_pb2.Lead) -> Stored:
            async with gate:
                return await self.store(lead, strict)

        return list(await asyncio.gather(*(one(lead) for lead in leads)))


def _never(rule_id: str, message: str) -> decision_pb2.Decision:
    """Fail closed without asking compliance: there is no number it could allow dialing."""
    return decision_pb2.Decision(
        action=decision_pb2.DIAL_ACTION_NEVER,
        reasons=[
            decision_pb2.Reason(rule_id=rule_id, message=message, action=decision_pb2.DIAL_ACTION_NEVER)
        ],
        evaluated_at=timestamps.to_proto(timestamps.utcnow()),
    )


def _never_dial_tests(decision: decision_pb2.Decision) -> decision_pb2.Decision:
    """A vendor's test lead is stored for the tenant to see, but must never ring anyone."""
    if decision.action == decision_pb2.DIAL_ACTION_NEVER:
        return decision
    out = decision_pb2.Decision()
    out.CopyFrom(decision)
    out.action = decision_pb2.DIAL_ACTION_NEVER
    out.ClearField("not_before")
    out.reasons.append(
        decision_pb2.Reason(
            rule_id=TEST_LEAD_RULE,
            message="the sender marked this lead as a test",
            action=decision_pb2.DIAL_ACTION_NEVER,
        )
    )
    return out

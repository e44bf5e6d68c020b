"""ComplianceService: evaluation, the dial-time gate with accounting, and compliance admin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict, ParseDict
from sqlalchemy import Engine

from leadflow.v1 import batch_pb2, compliance_pb2, compliance_pb2_grpc, decision_pb2, lead_pb2, tenant_pb2
from leadflow_compliance import dnc_registry, engine, rate_card, state_dnc_lists
from leadflow_compliance.accounting import (
    Accounts,
    Limits,
    ReserveResult,
    reservation_id_for,
    to_micros,
    usd,
)
from leadflow_compliance.batch_evaluation import Evaluation, evaluate_batch
from leadflow_compliance.consent_evidence import missing_evidence
from leadflow_compliance.decisions import Decider, Outcome, defer, lead_phone
from leadflow_compliance.listings import DncListingRpcs
from leadflow_compliance.models import ReservationRow
from leadflow_compliance.opt_out import is_opt_out
from leadflow_compliance.phone import InvalidPhone, analyse
from leadflow_compliance.repository import Repository, SubjectState
from leadflow_compliance.reserve_batch import ReserveBatchServicer
from leadflow_compliance.revocation_rpcs import RevocationRpcs
from leadflow_compliance.settlement_rpcs import SettlementRpcs
from leadflow_compliance.tenant_day import business_day
from leadflow_compliance.tenant_service import TenantCache
from leadflow_core import clock, grpc_errors
from leadflow_core.grpc_authz import audit_actor
from leadflow_core.grpc_batch import abort_item
from leadflow_core.logs import get_logger
from leadflow_core.request_context import tenant_var
from leadflow_core.timestamps import from_proto, to_proto, utcnow

log = get_logger("leadflow.compliance")

PURPOSES = {
    compliance_pb2.EVALUATION_PURPOSE_UNSPECIFIED: "unspecified",
    compliance_pb2.EVALUATION_PURPOSE_INGEST: "ingest",
    compliance_pb2.EVALUATION_PURPOSE_DIAL_GATE: "dial_gate",
    compliance_pb2.EVALUATION_PURPOSE_WHAT_IF: "what_if",
}
BOOSTED = (lead_pb2.URGENCY_EMERGENCY, lead_pb2.URGENCY_HIGH)


def decision_json(decision: decision_pb2.Decision) -> dict[str, Any]:
    return MessageToDict(decision, preserving_proto_field_name=True)


def call_estimate(tenant: tenant_pb2.Tenant, outcome: Outcome) -> int:
    """What the call is expected to cost, from the tenant's rate card and the callee's number."""
    return rate_card.estimate_micros(tenant.budget.rate_card, outcome.phone.region, outcome.phone.line_type)


def retry_instant(result: ReserveResult, now: datetime, real_now: datetime) -> datetime:
    """When a refused reservation may be tried again, told on the gate's clock `now` (a day or
    budget limit: the tenant's next midnight on the service clock)."""
    retry_at = result.retry_at or real_now + timedelta(minutes=1)
    return now + (retry_at - real_now) if now != real_now else retry_at


def limits_of(tenant: tenant_pb2.Tenant) -> Limits:
    budget = tenant.budget.daily_usd
    return Limits(
        per_minute=tenant.limits.calls_per_minute,
        per_hour=tenant.limits.calls_per_hour,
        per_day=tenant.limits.calls_per_day,
        concurrency=tenant.limits.concurrent_calls,
        daily_budget_micros=to_micros(budget) if budget else None,
    )


def audit_fields(
    action: str,
    tenant: str,
    lead: lead_pb2.Lead,
    outcome: Outcome,
    actor: str,
    detail: dict[str, Any],
) -> dict[str, Any]:
    """The audit record of one decision, as `Repository.audit` / `audit_many` take it."""
    v = outcome.verdict
    return {
        "tenant": tenant,
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "lead_id": lead.lead_id,
        "subject": outcome.subject,
        "decision": decision_json(outcome.decision),
        "rules_version": v.rules_version,
        "detail": {
            **detail,
            "states": list(v.states),
            "zones": list(v.zones),
            "line_type": outcome.phone.line_type,
            "region": outcome.phone.region,
        },
        "consent": outcome.consent,
    }


class ComplianceServicer(
    ReserveBatchServicer,
    SettlementRpcs,
    RevocationRpcs,
    DncListingRpcs,
    compliance_pb2_grpc.ComplianceServiceServicer,
):
    def __init__(
        self, repo: Repository, decider: Decider, accounts: Accounts, engine_: Engine, cache: TenantCache
    ) -> None:
        self.repo = repo
        self.cache = cache
        self.decider = decider
        self.accounts = accounts
        self.engine = engine_

    # --- helpers ---------------------------------------------------------------------------

    def _tenant(self, context: grpc.ServicerContext, name: str, field: str = "tenant") -> tenant_pb2.Tenant:
        if not name:
            grpc_errors.invalid_argument(context, field, "a tenant is required")
        tenant = self.cache.get(name)
        if tenant is None:
            grpc_errors.not_found(context, "tenant", name)
        tenant_var.set(name)
        return tenant

    def _subject(self, context: grpc.ServicerContext, tenant: tenant_pb2.Tenant, phone: str) -> str:
        try:
            facts = analyse(phone, tenant.policy.default_region or "US")
        except InvalidPhone as err:
            grpc_errors.invalid_argument(context, "phone_e164", str(err))
        return self.decider.subject(facts.e164)

    def _decide(
        self,
        context: grpc.ServicerContext,
        tenant: tenant_pb2.Tenant,
        lead: lead_pb2.Lead,
        now: datetime,
        **kw: Any,
    ) -> Outcome:
        try:
            return self.decider.decide(tenant, lead, now, **kw)
        except InvalidPhone as err:
            grpc_errors.invalid_argument(context, "lead.contact.phone.e164", str(err))

    def _audit_decision(
        self,
        action: str,
        tenant: str,
        lead: lead_pb2.Lead,
        outcome: Outcome,
        actor: str,
        detail: dict[str, Any],
    ) -> None:
        self.repo.audit(**audit_fields(action, tenant, lead, outcome, actor, detail))

    # --- evaluation --------------------------------------------------------------------------

    def Evaluate(
        self, request: compliance_pb2.EvaluateRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.EvaluateResponse:
        """The batch path with one request (see `batch_evaluation`)."""
        (result,) = evaluate_batch(self, [request], context)
        if isinstance(result, batch_pb2.ItemError):
            abort_item(context, result)
        return result

    def EvaluateBatch(
        self, request: compliance_pb2.EvaluateBatchRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.EvaluateBatchResponse:
        results = evaluate_batch(self, list(request.requests), context)
        return compliance_pb2.EvaluateBatchResponse(
            results=[
                compliance_pb2.EvaluateBatchResult(error=r)
                if isinstance(r, batch_pb2.ItemError)
                else compliance_pb2.EvaluateBatchResult(response=r)
                for r in results
            ]
        )

    def prepare_evaluation(
        self, request: compliance_pb2.EvaluateRequest, context: grpc.ServicerContext
    ) -> Evaluation:
        """Check one request and say what its decision must read (refused like the decision
        itself would be: no lead, unknown tenant, invalid phone)."""
        if not request.HasField("lead"):
            grpc_errors.invalid_argument(context, "lead", "a lead is required")
        lead = request.lead
        tenant = self._tenant(context, lead.tenant, "lead.tenant")
        purpose = PURPOSES.get(request.purpose, "unspecified")
        requested = from_proto(request.evaluate_at)
        # A caller-chosen instant is the what-if evaluation's question; anything that records or
        # gates a dial is decided at our own time (tests may still pick one outside production).
        honoured = requested is not None and (purpose == "what_if" or not clock.production())
        now = requested if honoured and requested is not None else utcnow()
        try:
            query = self.decider.query(tenant, lead, now, record_consent=purpose == "ingest")
        except InvalidPhone as err:
            grpc_errors.invalid_argument(context, "lead.contact.phone.e164", str(err))
        return Evaluation(request, tenant, purpose, now, query)

    def evaluate_one(
        self,
        request: compliance_pb2.EvaluateRequest,
        context: grpc.ServicerContext,
        audits: list[dict[str, Any]],
        prepared: Evaluation | None = None,
        state: SubjectState | None = None,
    ) -> compliance_pb2.EvaluateResponse:
        """Decide for one lead; its audit record (and consent) is appended to `audits` for the
        caller to write with the rest of the batch, before anyone hears the decision. `state`:
        the person's facts read already for `prepared.query` (a batch reads them all at once)."""
        ev = prepared if prepared is not None else self.prepare_evaluation(request, context)
        tenant, lead, purpose, now = ev.tenant, ev.request.lead, ev.purpose, ev.now
        outcome = self._decide(
            context,
            tenant,
            lead,
            now,
            record_consent=purpose == "ingest",
            actor=audit_actor(request.actor),
            state=state,
        )
        audits.append(
            audit_fields(
                "evaluate",
                tenant.name,
                lead,
                outcome,
                audit_actor(request.actor),
                {"purpose": purpose, "evaluate_at": now.isoformat()},
            )
        )
        log.info(
            "evaluated",
            decision_id=outcome.decision.decision_id,
            action=outcome.verdict.action,
            rules=[r.rule_id for r in outcome.verdict.reasons],
            purpose=purpose,
        )
        return compliance_pb2.EvaluateResponse(decision=outcome.decision)

    # --- dial-time gate and accounting -------------------------------------------------------

    def ReserveCall(
        self, request: compliance_pb2.ReserveCallRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.ReserveCallResponse:
        if not request.HasField("lead"):
            grpc_errors.invalid_argument(context, "lead", "a lead is required")
        if not request.attempt_id:
            grpc_errors.invalid_argument(context, "attempt_id", "an attempt id is required")
        lead = request.lead
        tenant = self._tenant(context, lead.tenant, "lead.tenant")
        existing = self.repo.reservation_for_attempt(tenant.name, request.attempt_id)
        if existing is not None:
            # The same attempt again (a redelivered job): the same answer, nothing reserved twice.
            decision = ParseDict(existing.decision, decision_pb2.Decision())
            return compliance_pb2.ReserveCallResponse(
                decision=decision, reservation_id=existing.reservation_id
            )
        try:
            estimate = to_micros(request.estimated_cost_usd)
        except ValueError as err:
            grpc_errors.invalid_argument(context, "estimated_cost_usd", str(err))
        real_now = utcnow()
        # The final gate decides at the server's own time; a caller's instant is a test hook.
        now = real_now if clock.production() else (from_proto(request.evaluate_at) or real_now)
        try:
            subject = self.decider.subject(
                analyse(lead_phone(lead), tenant.policy.default_region or "US").e164
            )
        except InvalidPhone as err:
            grpc_errors.invalid_argument(context, "lead.contact.phone.e164", str(err))
        # One gate at a time per person: parallel dials must not both pass an attempt cap.
        with self.accounts.person_lock(tenant.name, subject):
            existing = self.repo.reservation_for_attempt(tenant.name, request.attempt_id)
            if existing is not None:
                decision = ParseDict(existing.decision, decision_pb2.Decision())
                return compliance_pb2.ReserveCallResponse(
                    decision=decision, reservation_id=existing.reservation_id
                )
            outcome = self._decide(context, tenant, lead, now, record_consent=False, actor=audit_actor())
            decision = outcome.decision
            reservation_id = ""
            if outcome.verdict.action == "dial_now":
                limits = limits_of(tenant)
                if lead.urgency in BOOSTED:
                    limits = limits.boosted(tenant.limits.priority_boost_percent)
                reservation_id = reservation_id_for(tenant.name, request.attempt_id)
                # The rate card prices the call, unless the caller named its own estimate.
                if not request.estimated_cost_usd:
                    estimate = call_estimate(tenant, outcome)
                # The tenant's day on the service clock (a caller's instant moves only the gate).
                day = business_day(tenant.timezone, real_now)
                result = self.accounts.reserve(tenant.name, reservation_id, limits, estimate, real_now, day)
                if result.reserved:
                    row = self.repo.add_reservation(
                        ReservationRow(
                            reservation_id=reservation_id,
                            tenant=tenant.name,
                            attempt_id=request.attempt_id,
                            subject_hash=outcome.subject,
                            created_at=real_now,
                            decision=decision_json(decision),
                            estimated_cost_usd=usd(estimate),
                            day=day.date,
                            estimate_micros=estimate,
                        ),
                        attempt_at=now,
                    )
                    decision = ParseDict(row.decision, decision_pb2.Decision())
                else:
                    reservation_id = ""
                    retry_at = retry_instant(result, now, real_now)
                    decision = defer(
                        decision,
                        engine.Finding(
                            f"tenant.limit.{result.detail}",
                            f"the tenant's {result.detail} limit is reached",
                            "tenant limits",
                            "defer",
                            retry_at,
                        ),
                    )
        outcome = Outcome(outcome.verdict, decision, outcome.phone, outcome.subject)
        self._audit_decision(
            "reserve",
            tenant.name,
            lead,
            outcome,
            "dial",
            {
                "attempt_id": request.attempt_id,
                "reservation_id": reservation_id,
                "evaluate_at": now.isoformat(),
            },
        )
        return compliance_pb2.ReserveCallResponse(decision=decision, reservation_id=reservation_id)

    def RecordContactAttempt(
        self, request: compliance_pb2.RecordContactAttemptRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.RecordContactAttemptResponse:
        tenant = self._tenant(context, request.tenant)
        if request.channel not in ("call", "sms"):
            grpc_errors.invalid_argument(context, "channel", "must be 'call' or 'sms'")
        subject = self._subject(context, tenant, request.phone_e164)
        at = from_proto(request.at) or utcnow()
        self.repo.record_attempt(tenant.name, subject, at, request.channel)
        revoked = bool(request.content) and is_opt_out(request.content)
        if revoked:
            self.repo.revoke(tenant.name, subject, at, request.channel, "opt-out words", "contact")
        self.repo.audit(
            tenant=tenant.name,
            at=utcnow(),
            actor=audit_actor(),
            action="contact_attempt",
            subject=subject,
            detail={"channel": request.channel, "at": at.isoformat(), "consent_revoked": revoked},
        )
        return compliance_pb2.RecordContactAttemptResponse(consent_revoked=revoked)

    # --- consent and DNC administration --------------------------------------------------------

    def RecordConsent(
        self, request: compliance_pb2.RecordConsentRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.RecordConsentResponse:
        tenant = self._tenant(context, request.tenant)
        subject = self._subject(context, tenant, request.phone_e164)
        if not request.evidence.granted:
            grpc_errors.invalid_argument(context, "evidence.granted", "consent evidence must be granted")
        now = utcnow()
        at = from_proto(request.evidence.consented_at) or now
        if at > now + timedelta(minutes=5):
            grpc_errors.invalid_argument(context, "evidence.consented_at", "consent cannot be in the future")
        given = lead_pb2.ConsentEvidence()
        given.CopyFrom(request.evidence)
        given.consented_at.CopyFrom(to_proto(at))
        evidence = MessageToDict(given, preserving_proto_field_name=True)
        missing = missing_evidence(given)
        consent_id = self.repo.record_consent(
            tenant.name, subject, at, evidence, audit_actor(request.actor), now, verified=not missing
        )
        self.repo.audit(
            tenant=tenant.name,
            at=now,
            actor=audit_actor(request.actor),
            action="consent.record",
            subject=subject,
            detail={"consent_id": consent_id, "consented_at": at.isoformat(), "missing": list(missing)},
        )
        return compliance_pb2.RecordConsentResponse(
            consent_id=consent_id, verified=not missing, missing=list(missing)
        )

    def RevokeConsent(
        self, request: compliance_pb2.RevokeConsentRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.RevokeConsentResponse:
        tenant = self._tenant(context, request.tenant)
        subject = self._subject(context, tenant, request.phone_e164)
        now = utcnow()
        self.repo.revoke(
            tenant.name, subject, now, request.channel or "api", request.note, audit_actor(request.actor)
        )
        self.repo.audit(
            tenant=tenant.name,
            at=now,
            actor=audit_actor(request.actor),
            action="consent.revoke",
            subject=subject,
            detail={"channel": request.channel or "api"},
        )
        return compliance_pb2.RevokeConsentResponse(revoked_at=to_proto(now))

    def AddDoNotCall(
        self, request: compliance_pb2.AddDoNotCallRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.AddDoNotCallResponse:
        tenant = self._tenant(context, request.tenant)
        subject = self._subject(context, tenant, request.phone_e164)
        now = utcnow()
        added = self.repo.add_dnc(tenant.name, subject, request.reason, audit_actor(request.actor), now)
        self.repo.audit(
            tenant=tenant.name, at=now, actor=audit_actor(request.actor), action="dnc.add", subject=subject,
            detail={"added": added, "reason": request.reason},
        )  # fmt: skip
        return compliance_pb2.AddDoNotCallResponse(added=added)

    def RemoveDoNotCall(
        self, request: compliance_pb2.RemoveDoNotCallRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.RemoveDoNotCallResponse:
        tenant = self._tenant(context, request.tenant)
        subject = self._subject(context, tenant, request.phone_e164)
        now = utcnow()
        removed = self.repo.remove_dnc(tenant.name, subject)
        self.repo.audit(
            tenant=tenant.name,
            at=now,
            actor=audit_actor(request.actor),
            action="dnc.remove",
            subject=subject,
            detail={"removed": removed},
        )
        return compliance_pb2.RemoveDoNotCallResponse(removed=removed)

    def ImportDncRegistry(
        self, request_iterator: Iterator[compliance_pb2.ImportDncRegistryChunk], context: grpc.ServicerContext
    ) -> compliance_pb2.ImportDncRegistryResponse:
        tenant_var.set("")
        first = next(request_iterator, None)
        if first is None:
            grpc_errors.invalid_argument(context, "data", "the registry file is empty")
        replace = first.replace
        try:
            state = state_dnc_lists.parse_list_id(first.list)
        except ValueError as err:
            grpc_errors.invalid_argument(context, "list", str(err))

        def chunks() -> Iterator[bytes]:
            yield first.data
            for chunk in request_iterator:
                yield chunk.data

        now = utcnow()
        if state is None:
            result = dnc_registry.load(self.engine, chunks(), replace, now)
            self.repo.forget_registry_slot()
        else:
            result = state_dnc_lists.load(self.engine, state, chunks(), replace, now)
        self.repo.audit(
            tenant="",
            at=utcnow(),
            actor=audit_actor(),
            action="dnc.registry_import" if state is None else "dnc.list_import",
            detail={
                "list": state_dnc_lists.FEDERAL if state is None else state_dnc_lists.list_id(state),
                "replace": replace,
                "numbers_loaded": result.numbers_loaded,
                "lines_rejected": result.lines_rejected,
                "numbers_removed": result.numbers_removed,
                "version": result.version,
            },
        )
        log.info(
            "dnc_registry_imported",
            list=first.list or state_dnc_lists.FEDERAL,
            numbers=result.numbers_loaded,
            removed=result.numbers_removed,
            rejected=result.lines_rejected,
        )
        return compliance_pb2.ImportDncRegistryResponse(
            numbers_loaded=result.numbers_loaded,
            lines_rejected=result.lines_rejected,
            registry_version=result.version,
        )

    # --- emergency stop ----------------------------------------------------------------------

    def SetEmergencyStop(
        self, request: compliance_pb2.SetEmergencyStopRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.SetEmergencyStopResponse:
        tenant_var.set(request.tenant)
        if request.tenant:
            self._tenant(context, request.tenant)
        if request.duration_seconds == 0:
            grpc_errors.invalid_argument(context, "duration_seconds", "an emergency stop needs a duration")
        if not request.reason.strip():
            grpc_errors.invalid_argument(context, "reason", "an emergency stop needs a reason")
        now = utcnow()
        until = now + timedelta(seconds=request.duration_seconds)
        self.repo.set_emergency_stop(request.tenant, until, request.reason, audit_actor(request.actor), now)
        self.repo.audit(
            tenant=request.tenant,
            at=now,
            actor=audit_actor(request.actor),
            action="emergency_stop.set",
            detail={
                "until": until.isoformat(),
                "reason": request.reason,
                "scope": request.tenant or "global",
            },
        )
        log.warning("emergency_stop_set", scope=request.tenant or "global", until=until.isoformat())
        return compliance_pb2.SetEmergencyStopResponse(until=to_proto(until))

    def ClearEmergencyStop(
        self, request: compliance_pb2.ClearEmergencyStopRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.ClearEmergencyStopResponse:
        tenant_var.set(request.tenant)
        if request.tenant:
            self._tenant(context, request.tenant)
        self.repo.clear_emergency_stop(request.tenant)
        self.repo.audit(
            tenant=request.tenant,
            at=utcnow(),
            actor=audit_actor(request.actor),
            action="emergency_stop.clear",
            detail={"scope": request.tenant or "global"},
        )
        return compliance_pb2.ClearEmergencyStopResponse()

    # --- audit ----------------------------------------------------------------------------

    def ExportAuditLog(
        self, request: compliance_pb2.ExportAuditLogRequest, context: grpc.ServicerContext
    ) -> Iterator[compliance_pb2.AuditRecord]:
        tenant = self._tenant(context, request.tenant)
        start = from_proto(getattr(request, "from")) or datetime(1970, 1, 1, tzinfo=UTC)
        end = from_proto(request.to) or utcnow() + timedelta(seconds=1)
        for row in self.repo.export_audit(tenant.name, start, end):
            record = compliance_pb2.AuditRecord(
                record_id=row.record_id,
                tenant=row.tenant,
                at=to_proto(row.at),
                actor=row.actor,
                action=row.action,
                lead_id=row.lead_id,
                subject_hash=row.subject_hash,
                detail_json=_json({**row.detail, "rules_version": row.rules_version}),
            )
            if row.decision:
                ParseDict(row.decision, record.decision)
            yield record


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, default=str)

"""ComplianceService against the real process on PostgreSQL and Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest

from leadflow.v1 import (
    compliance_pb2,
    compliance_pb2_grpc,
    decision_pb2,
    lead_pb2,
    tenants_pb2,
    tenants_pb2_grpc,
)
from leadflow_core.grpc_errors import field_violations
from leadflow_core.timestamps import from_proto, to_proto
from services.compliance.tests.conftest import make_tenant

NY = ZoneInfo("America/New_York")
# A weekday afternoon in New York: every rule allows a call then.
OPEN = datetime(2026, 11, 18, 15, 0, tzinfo=NY)
NY_PHONE = "+12125550147"
FL_PHONE = "+13055550147"


def lead(tenant: str, phone: str = NY_PHONE, consent: bool = True, **kw: object) -> lead_pb2.Lead:
    msg = lead_pb2.Lead(
        lead_id=uuid.uuid4().hex,
        tenant=tenant,
        source=lead_pb2.SOURCE_API,
        contact=lead_pb2.Contact(phone=lead_pb2.Phone(e164=phone)),
        consent=lead_pb2.ConsentEvidence(
            granted=consent,
            disclosure_text="I agree to be called",
            consented_at=to_proto(OPEN - timedelta(hours=1)),
            seller=tenant,
            form_submission_id="sub-" + uuid.uuid4().hex[:8],
        ),
        **kw,  # type: ignore[arg-type]
    )
    return msg


def evaluate(
    stub: compliance_pb2_grpc.ComplianceServiceStub, msg: lead_pb2.Lead, at: datetime = OPEN
) -> decision_pb2.Decision:
    req = compliance_pb2.EvaluateRequest(
        lead=msg, evaluate_at=to_proto(at), purpose=compliance_pb2.EVALUATION_PURPOSE_INGEST, actor="test"
    )
    return stub.Evaluate(req).decision


def rule_ids(decision: decision_pb2.Decision) -> set[str]:
    return {r.rule_id for r in decision.reasons}


@pytest.fixture
def tenant(admin: tenants_pb2_grpc.TenantAdminServiceStub) -> str:
    return make_tenant(admin).name


def test_missing_lead_and_bad_phone_are_invalid_argument(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, tenant: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        compliance.Evaluate(compliance_pb2.EvaluateRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(err.value)[0][0] == "lead"
    with pytest.raises(grpc.RpcError) as err:
        evaluate(compliance, lead(tenant, phone="+1555"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(err.value)[0][0] == "lead.contact.phone.e164"
    with pytest.raises(grpc.RpcError) as err:
        evaluate(compliance, lead("no-such-tenant"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_consent_is_required_and_reasons_name_statutes(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, tenant: str
) -> None:
    d = evaluate(compliance, lead(tenant, phone="+12125550100", consent=False))
    assert d.action == decision_pb2.DIAL_ACTION_NEVER
    (reason,) = [r for r in d.reasons if r.rule_id == "consent.missing"]
    assert reason.statute == "47 CFR 64.1200(a)(2)"
    ok = evaluate(compliance, lead(tenant))
    assert ok.action == decision_pb2.DIAL_ACTION_DIAL_NOW, ok
    assert ok.rules_version
    assert ok.decision_id


def test_22h_local_defers_to_8h_next_morning(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, tenant: str
) -> None:
    at = datetime(2026, 11, 18, 22, 0, tzinfo=NY)
    d = evaluate(compliance, lead(tenant), at)
    assert d.action == decision_pb2.DIAL_ACTION_DEFER
    assert from_proto(d.not_before) == datetime(2026, 11, 19, 8, 0, tzinfo=NY)
    assert "federal.calling_hours" in rule_ids(d)


def test_vendor_test_lead_is_never_dialed(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, tenant: str
) -> None:
    d = evaluate(compliance, lead(tenant, is_test=True))
    assert d.action == decision_pb2.DIAL_ACTION_NEVER
    assert "lead.test" in rule_ids(d)


def test_revocation_by_sms_word_then_new_consent_restores(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, tenant: str
) -> None:
    phone = "+12125550111"
    assert evaluate(compliance, lead(tenant, phone)).action == decision_pb2.DIAL_ACTION_DIAL_NOW
    reply = compliance.RecordContactAttempt(
        compliance_pb2.RecordContactAttemptRequest(
            tenant=tenant,
            phone_e164=phone,
            channel="sms",
            content="Please STOP texting me",
            at=to_proto(OPEN),
        )
    )
    assert reply.consent_revoked
    # The consent in the lead predates the revocation: it does not count.
    d = evaluate(compliance, lead(tenant, phone), OPEN + timedelta(minutes=1))
    assert d.action == decision_pb2.DIAL_ACTION_NEVER
    assert "consent.revoked" in rule_ids(d)
    # Revocation "now" (wall clock) is after OPEN; new consent must come after it.
    later = datetime.now(UTC) + timedelta(seconds=1)
    compliance.RevokeConsent(
        compliance_pb2.RevokeConsentRequest(tenant=tenant, phone_e164=phone, channel="cli")
    )
    compliance.RecordConsent(
        compliance_pb2.RecordConsentRequest(
            tenant=tenant,
            phone_e164=phone,
            evidence=lead_pb2.ConsentEvidence(
                granted=True,
                consented_at=to_proto(later),
                disclosure_text="yes",
                seller=tenant,
                trustedform_cert_url="https://cert.trustedform.com/abc",
            ),
            actor="test",
        )
    )
    next_day = datetime.now(NY).replace(hour=12) + timedelta(days=1)
    while next_day.weekday() >= 5:
        next_day += timedelta(days=1)
    fresh = lead(tenant, phone, consent=False)
    assert evaluate(compliance, fresh, next_day).action == decision_pb2.DIAL_ACTION_DIAL_NOW


def test_internal_dnc_add_and_remove(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, tenant: str
) -> None:
    phone = "+12125550122"
    add = compliance.AddDoNotCall(
        compliance_pb2.AddDoNotCallRequest(tenant=tenant, phone_e164=phone, reason="asked")
    )
    assert add.added
    d = evaluate(compliance, lead(tenant, phone))
    assert d.action == decision_pb2.DIAL_ACTION_NEVER
    assert "dnc.internal" in rule_ids(d)
    assert compliance.RemoveDoNotCall(
        compliance_pb2.RemoveDoNotCallRequest(tenant=tenant, phone_e164=phone)
    ).removed
    assert evaluate(compliance, lead(tenant, phone)).action == decision_pb2.DIAL_ACTION_DIAL_NOW


def test_fourth_attempt_in_24h_in_florida_is_deferred(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, tenant: str
) -> None:
    base = OPEN - timedelta(hours=5)
    for i, channel in enumerate(("call", "sms", "call")):
        compliance.RecordContactAttempt(
            compliance_pb2.RecordContactAttemptRequest(
                tenant=tenant, phone_e164=FL_PHONE, channel=channel, at=to_proto(base + timedelta(hours=i))
            )
        )
    d = evaluate(compliance, lead(tenant, FL_PHONE))
    assert d.action == decision_pb2.DIAL_ACTION_DEFER
    assert "state.FL.attempt_cap" in rule_ids(d)
    # Allowed once the first attempt leaves the 24 h window: 10:00 the next day, inside Florida's hours.
    assert from_proto(d.not_before) == base + timedelta(hours=24)


def _reserve(
    stub: compliance_pb2_grpc.ComplianceServiceStub, msg: lead_pb2.Lead, attempt: str
) -> compliance_pb2.ReserveCallResponse:
    return stub.ReserveCall(
        compliance_pb2.ReserveCallRequest(
            lead=msg, attempt_id=attempt, estimated_cost_usd="0.50", evaluate_at=to_proto(OPEN)
        )
    )


def test_paused_tenant_is_deferred_at_the_gate_then_allowed_after_resume(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(admin).name
    msg = lead(tenant, "+12125550133")
    admin.SetPaused(tenants_pb2.SetPausedRequest(name=tenant, paused=True, reason="billing"))
    refused = _reserve(compliance, msg, "a1")
    assert refused.decision.action == decision_pb2.DIAL_ACTION_DEFER
    assert not refused.reservation_id
    assert "tenant.paused" in rule_ids(refused.decision)
    admin.SetPaused(tenants_pb2.SetPausedRequest(name=tenant, paused=False))
    allowed = _reserve(compliance, msg, "a1")
    assert allowed.decision.action == decision_pb2.DIAL_ACTION_DIAL_NOW
    assert allowed.reservation_id
    again = _reserve(compliance, msg, "a1")
    assert again.reservation_id == allowed.reservation_id
    assert again.decision.decision_id == allowed.decision.decision_id
    usage = admin.GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant)).usage
    assert usage.calls_today == 1
    assert usage.active_calls == 1
    assert usage.spend_today_usd == "0.50"
    settled = compliance.SettleCall(
        compliance_pb2.SettleCallRequest(
            tenant=tenant,
            reservation_id=allowed.reservation_id,
            outcome=compliance_pb2.CALL_OUTCOME_COMPLETED,
            actual_cost_usd="0.25",
            transcript="please remove me, opt-out",
        )
    )
    assert settled.settled
    assert settled.consent_revoked
    usage = admin.GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant)).usage
    assert usage.active_calls == 0
    assert usage.spend_today_usd == "0.25"
    d = _reserve(compliance, msg, "a2").decision
    assert d.action == decision_pb2.DIAL_ACTION_NEVER
    assert "consent.revoked" in rule_ids(d)


def test_emergency_stop_defers_until_cleared(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(admin).name
    msg = lead(tenant, "+12125550144")
    until = compliance.SetEmergencyStop(
        compliance_pb2.SetEmergencyStopRequest(
            tenant=tenant, duration_seconds=600, reason="carrier complaint"
        )
    ).until
    now = datetime.now(UTC)
    d = compliance.ReserveCall(
        compliance_pb2.ReserveCallRequest(lead=msg, attempt_id="x", evaluate_at=to_proto(now))
    )
    assert d.decision.action == decision_pb2.DIAL_ACTION_DEFER
    assert "emergency_stop" in rule_ids(d.decision)
    assert d.decision.not_before.seconds >= until.seconds
    compliance.ClearEmergencyStop(compliance_pb2.ClearEmergencyStopRequest(tenant=tenant))
    d2 = compliance.ReserveCall(
        compliance_pb2.ReserveCallRequest(lead=msg, attempt_id="x", evaluate_at=to_proto(now))
    )
    assert "emergency_stop" not in rule_ids(d2.decision)


def test_rate_limit_defers_and_emergency_leads_get_the_boost(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(
        admin, limits={"callsPerMinute": 5, "concurrentCalls": 100, "priorityBoostPercent": 20}
    ).name
    results = [
        _reserve(compliance, lead(tenant, f"+1212555{1000 + i}"), f"m{i}").decision.action for i in range(6)
    ]
    assert results == [decision_pb2.DIAL_ACTION_DIAL_NOW] * 5 + [decision_pb2.DIAL_ACTION_DEFER]
    urgent = lead(tenant, "+12125552000", urgency=lead_pb2.URGENCY_EMERGENCY)
    assert _reserve(compliance, urgent, "u1").decision.action == decision_pb2.DIAL_ACTION_DIAL_NOW
    limited = _reserve(compliance, lead(tenant, "+12125552001"), "m9").decision
    assert "tenant.limit.minute" in rule_ids(limited)


def test_registry_import_and_audit_export(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, tenant: str
) -> None:
    def chunks() -> Iterator[compliance_pb2.ImportDncRegistryChunk]:
        yield compliance_pb2.ImportDncRegistryChunk(data=b"212,5550177\n2125550178\n", replace=True)
        yield compliance_pb2.ImportDncRegistryChunk(data=b"212,55501")
        yield compliance_pb2.ImportDncRegistryChunk(data=b"79\ngarbage\n")

    result = compliance.ImportDncRegistry(chunks())
    assert (result.numbers_loaded, result.lines_rejected) == (3, 1)
    d = evaluate(compliance, lead(tenant, "+12125550179", consent=False))
    assert {"dnc.registry", "consent.missing"} <= rule_ids(d)
    # Express consent exempts from the registry.
    ok = evaluate(compliance, lead(tenant, "+12125550178"))
    assert ok.action == decision_pb2.DIAL_ACTION_DIAL_NOW
    assert "dnc.registry.exempt" in rule_ids(ok)
    records = list(compliance.ExportAuditLog(compliance_pb2.ExportAuditLogRequest(tenant=tenant)))
    assert len(records) >= 2
    assert all(r.tenant == tenant for r in records)
    assert {r.action for r in records} >= {"evaluate"}
    dumped = "".join(str(r) for r in records)
    assert "5550179" not in dumped
    assert "5550178" not in dumped
    evaluated = [r for r in records if r.action == "evaluate"]
    assert all(r.subject_hash and r.decision.rules_version for r in evaluated)
    assert json.loads(evaluated[0].detail_json)["purpose"] == "ingest"


def test_global_emergency_stop_needs_duration_and_reason_and_stops_every_tenant(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        compliance.SetEmergencyStop(compliance_pb2.SetEmergencyStopRequest(duration_seconds=60))
    assert field_violations(err.value)[0][0] == "reason"
    with pytest.raises(grpc.RpcError) as err:
        compliance.SetEmergencyStop(compliance_pb2.SetEmergencyStopRequest(reason="x"))
    assert field_violations(err.value)[0][0] == "duration_seconds"
    tenants = [make_tenant(admin).name for _ in range(2)]
    compliance.SetEmergencyStop(
        compliance_pb2.SetEmergencyStopRequest(duration_seconds=300, reason="regulator")
    )
    try:
        now = to_proto(datetime.now(UTC))
        for name in tenants:
            reply = compliance.ReserveCall(
                compliance_pb2.ReserveCallRequest(
                    lead=lead(name, "+12125550155"), attempt_id="g", evaluate_at=now
                )
            )
            assert reply.decision.action == decision_pb2.DIAL_ACTION_DEFER
            assert "emergency_stop" in rule_ids(reply.decision)
            assert not reply.reservation_id
    finally:
        compliance.ClearEmergencyStop(compliance_pb2.ClearEmergencyStopRequest())


def test_release_of_a_call_never_placed_gives_everything_back(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(admin, limits={"concurrentCalls": 1}).name
    msg = lead(tenant, "+12125550188")
    first = _reserve(compliance, msg, "p1")
    assert first.reservation_id
    # The only slot is taken: another attempt is deferred.
    busy = _reserve(compliance, lead(tenant, "+12125550189"), "p2").decision
    assert "tenant.limit.concurrency" in rule_ids(busy)
    release = compliance_pb2.SettleCallRequest(
        tenant=tenant, reservation_id=first.reservation_id, outcome=compliance_pb2.CALL_OUTCOME_NOT_PLACED
    )
    assert compliance.SettleCall(release).settled
    assert not compliance.SettleCall(release).settled
    usage = admin.GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant)).usage
    assert (usage.calls_today, usage.active_calls, usage.spend_today_usd) == (0, 0, "0.00")
    # The same attempt, retried, reserves again.
    again = _reserve(compliance, msg, "p1")
    assert again.decision.action == decision_pb2.DIAL_ACTION_DIAL_NOW
    assert again.reservation_id == first.reservation_id
    assert admin.GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant)).usage.active_calls == 1


def test_parallel_dials_to_one_person_respect_the_florida_cap(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, tenant: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    phone = "+13055550160"
    for hours in (3, 2):
        compliance.RecordContactAttempt(
            compliance_pb2.RecordContactAttemptRequest(
                tenant=tenant, phone_e164=phone, channel="sms", at=to_proto(OPEN - timedelta(hours=hours))
            )
        )
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda i: _reserve(compliance, lead(tenant, phone), f"fl{i}"), range(6)))
    actions = sorted(r.decision.action for r in replies)
    assert actions == [decision_pb2.DIAL_ACTION_DIAL_NOW] + [decision_pb2.DIAL_ACTION_DEFER] * 5

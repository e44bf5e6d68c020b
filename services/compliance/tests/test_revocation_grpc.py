"""Revocation from every channel, the confirmation rule and unverified consent, against the real
compliance process on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import text

from leadflow.v1 import compliance_pb2, compliance_pb2_grpc, decision_pb2, lead_pb2, tenants_pb2_grpc
from leadflow_compliance.repository import Repository
from leadflow_core.db import make_engine, make_sessionmaker
from leadflow_core.timestamps import to_proto
from services.compliance.tests.conftest import make_tenant
from services.compliance.tests.test_compliance_grpc import OPEN, evaluate, lead, rule_ids

Stub = compliance_pb2_grpc.ComplianceServiceStub


def phone() -> str:
    return f"+1212555{uuid.uuid4().int % 10000:04d}"


def signal(
    stub: Stub, tenant: str, channel: str, said: str, **kw: str
) -> compliance_pb2.RevocationSignalResponse:
    req = compliance_pb2.RevocationSignalRequest(tenant=tenant, channel=channel, text=said)
    req.message_id = kw.pop("message_id", uuid.uuid4().hex)
    for name, value in kw.items():
        setattr(req, name, value)
    return stub.RecordRevocationSignal(req)


def reserve(stub: Stub, msg: lead_pb2.Lead) -> compliance_pb2.ReserveCallResponse:
    return stub.ReserveCall(
        compliance_pb2.ReserveCallRequest(
            lead=msg, attempt_id=uuid.uuid4().hex, estimated_cost_usd="0.10", evaluate_at=to_proto(OPEN)
        )
    )


def audit(stub: Stub, tenant: str) -> list[compliance_pb2.AuditRecord]:
    return list(stub.ExportAuditLog(compliance_pb2.ExportAuditLogRequest(tenant=tenant)))


@pytest.fixture
def tenant(admin: tenants_pb2_grpc.TenantAdminServiceStub) -> str:
    return make_tenant(admin).name


@pytest.mark.parametrize(
    ("channel", "said"),
    [("sms", "STOP"), ("sms", "Stop calling me after 5pm"), ("call_disposition", "do_not_call")],
)
def test_an_opt_out_stops_the_next_evaluate_and_reserve(
    compliance: Stub, tenant: str, channel: str, said: str
) -> None:
    number = phone()
    msg = lead(tenant, number)
    assert evaluate(compliance, msg).action == decision_pb2.DIAL_ACTION_DIAL_NOW
    reply = signal(compliance, tenant, channel, said, phone_e164=number)
    assert reply.revoked
    assert reply.revocation_id
    assert reply.scope == "all_campaigns"
    d = evaluate(compliance, msg)
    assert d.action == decision_pb2.DIAL_ACTION_NEVER
    assert "consent.revoked" in rule_ids(d)
    assert d.consent_status == "revoked"
    gate = reserve(compliance, msg)
    assert gate.decision.action == decision_pb2.DIAL_ACTION_NEVER
    assert not gate.reservation_id
    # Another number of the same tenant is untouched.
    assert evaluate(compliance, lead(tenant, phone())).action == decision_pb2.DIAL_ACTION_DIAL_NOW


def test_an_email_unsubscribe_stops_calls_to_the_lead_with_that_email(compliance: Stub, tenant: str) -> None:
    number, email = phone(), f"pat-{uuid.uuid4().hex[:6]}@example.com"
    msg = lead(tenant, number)
    msg.contact.email = email
    assert evaluate(compliance, msg).action == decision_pb2.DIAL_ACTION_DIAL_NOW
    reply = signal(compliance, tenant, "email", "", email=email.upper(), subject="Re: Unsubscribe")
    assert reply.revoked
    assert reply.matched == "keyword"
    assert "consent.revoked" in rule_ids(evaluate(compliance, msg))
    assert reserve(compliance, msg).decision.action == decision_pb2.DIAL_ACTION_NEVER


def test_an_ordinary_reply_is_audited_and_revokes_nothing(compliance: Stub, tenant: str) -> None:
    number = phone()
    reply = signal(compliance, tenant, "sms", "Yes, call me at 3", phone_e164=number)
    assert not reply.revoked
    assert not reply.revocation_id
    assert evaluate(compliance, lead(tenant, number)).action == decision_pb2.DIAL_ACTION_DIAL_NOW
    (record,) = [r for r in audit(compliance, tenant) if r.action == "consent.signal"]
    assert json.loads(record.detail_json)["revoked"] is False


def test_revocation_is_audited_with_its_evidence_and_a_redelivery_is_one_revocation(
    compliance: Stub, tenant: str
) -> None:
    number = phone()
    first = signal(
        compliance,
        tenant,
        "sms",
        "STOP texting me, this is 212 555 0199",
        phone_e164=number,
        message_id="SM1",
    )
    again = signal(
        compliance,
        tenant,
        "sms",
        "STOP texting me, this is 212 555 0199",
        phone_e164=number,
        message_id="SM1",
    )
    assert again.duplicate
    assert again.revocation_id == first.revocation_id
    records = [r for r in audit(compliance, tenant) if r.action == "consent.revoke"]
    assert len(records) == 1
    detail = json.loads(records[0].detail_json)
    assert detail["channel"] == "sms"
    assert detail["message_id"] == "SM1"
    assert detail["matched"] == "phrase"
    # The audit copy of the text has the number masked; the subject is a hash.
    assert "0199" in detail["text"]
    assert "555 0199" not in detail["text"]
    assert records[0].subject_hash
    assert number not in records[0].detail_json


def test_campaign_scope_revokes_only_that_campaign(
    compliance: Stub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(admin, policy={"revocationScope": "campaign"}).name
    number = phone()
    spring, autumn = lead(tenant, number), lead(tenant, number)
    spring.campaign = "spring"
    autumn.custom_fields["campaign"] = "autumn"  # an older sender's custom field counts too
    reply = signal(compliance, tenant, "sms", "STOP", phone_e164=number, campaign="spring")
    assert reply.scope == "campaign:spring"
    assert evaluate(compliance, spring).action == decision_pb2.DIAL_ACTION_NEVER
    assert evaluate(compliance, autumn).action == decision_pb2.DIAL_ACTION_DIAL_NOW
    # Unknown campaign: every campaign.
    other = phone()
    assert signal(compliance, tenant, "sms", "STOP", phone_e164=other).scope == "all_campaigns"
    assert evaluate(compliance, lead(tenant, other)).action == decision_pb2.DIAL_ACTION_NEVER


def test_bad_signals_are_invalid_argument_and_change_nothing(compliance: Stub, tenant: str) -> None:
    number = phone()
    bad = [
        {"channel": "fax", "phone_e164": number},
        {"channel": "sms", "phone_e164": "not a phone"},
        {"channel": "email", "email": "nobody"},
        {"channel": "sms"},
    ]
    for kw in bad:
        req = compliance_pb2.RevocationSignalRequest(tenant=tenant, text="STOP")
        for name, value in kw.items():
            setattr(req, name, value)
        with pytest.raises(grpc.RpcError) as err:
            compliance.RecordRevocationSignal(req)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert evaluate(compliance, lead(tenant, number)).action == decision_pb2.DIAL_ACTION_DIAL_NOW
    assert not [r for r in audit(compliance, tenant) if r.action.startswith("consent.")]


def test_one_confirmation_within_five_minutes(compliance: Stub, tenant: str, database_url: str) -> None:
    reply = signal(compliance, tenant, "sms", "STOP", phone_e164=phone())

    def claim(revocation_id: str) -> compliance_pb2.ClaimRevocationConfirmationResponse:
        return compliance.ClaimRevocationConfirmation(
            compliance_pb2.ClaimRevocationConfirmationRequest(tenant=tenant, revocation_id=revocation_id)
        )

    assert claim(reply.revocation_id).allowed
    second = claim(reply.revocation_id)
    assert not second.allowed
    assert second.reason == "already sent"
    assert claim("unknown").reason == "unknown revocation"
    # A revocation stored six minutes ago: too late for a confirmation.
    engine = make_engine(database_url)
    try:
        repo = Repository(make_sessionmaker(engine))
        old = repo.revoke_from_signal(
            tenant, "0" * 16, datetime.now(UTC) - timedelta(minutes=6), "sms", "SM-old", "", {}, "test"
        )
        with engine.connect() as conn:
            claimed = conn.execute(
                text("SELECT confirmation_claimed_at FROM compliance_revocations WHERE revocation_id = :r"),
                {"r": old.revocation_id},
            ).scalar_one()
        assert claimed is None
    finally:
        engine.dispose()
    late = claim(old.revocation_id)
    assert not late.allowed
    assert late.reason == "more than 5 minutes after the revocation"
    # Another tenant cannot claim this tenant's confirmation.
    assert claim(reply.revocation_id).allowed is False


def test_granted_consent_without_evidence_is_unverified_and_not_dialed(compliance: Stub, tenant: str) -> None:
    msg = lead(tenant, phone())
    msg.consent.ClearField("form_submission_id")
    msg.consent.seller = ""
    d = evaluate(compliance, msg)
    assert d.action == decision_pb2.DIAL_ACTION_NEVER
    assert d.consent_status == "unverified"
    (reason,) = [r for r in d.reasons if r.rule_id == "consent.unverified"]
    assert "seller" in reason.message
    assert "evidence reference" in reason.message
    assert reserve(compliance, msg).decision.action == decision_pb2.DIAL_ACTION_NEVER
    # The unverified consent is stored with the decision's audit but never counts for dialing.
    later = lead(tenant, msg.contact.phone.e164, consent=False)
    assert "consent.missing" in rule_ids(evaluate(compliance, later))


def test_record_consent_reports_what_is_missing(compliance: Stub, tenant: str) -> None:
    number = phone()
    reply = compliance.RecordConsent(
        compliance_pb2.RecordConsentRequest(
            tenant=tenant,
            phone_e164=number,
            evidence=lead_pb2.ConsentEvidence(granted=True, disclosure_text="ok"),
        )
    )
    assert not reply.verified
    assert list(reply.missing) == [
        "seller",
        "evidence reference (TrustedForm, Jornaya LeadiD or form submission)",
    ]
    assert "consent.missing" in rule_ids(evaluate(compliance, lead(tenant, number, consent=False)))


@pytest.mark.parametrize(
    ("setting", "caller", "allowed", "announce"),
    [
        ("", "+12125550100", False, False),
        ("one_party_states_only", "+12125550100", True, False),
        # The caller-id number is in Florida (all-party): off with one_party_states_only.
        ("one_party_states_only", "+13055550100", False, True),
        ("always_with_announcement", "+13055550100", True, True),
    ],
)
def test_recording_decision_uses_the_setting_and_the_caller_id_state(
    compliance: Stub,
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
    setting: str,
    caller: str,
    allowed: bool,
    announce: bool,
) -> None:
    spec: dict[str, object] = {
        "providers": {"dialer": {"type": "twilio", "options": {"from_number": caller, "account_sid": "AC1"}}}
    }
    if setting:
        spec["policy"] = {"recording": setting}
    tenant = make_tenant(admin, **spec).name
    d = reserve(compliance, lead(tenant, phone())).decision
    assert d.action == decision_pb2.DIAL_ACTION_DIAL_NOW
    assert (d.recording_allowed, d.recording_disclosure_required) == (allowed, announce)
    assert d.recording_reason


def test_an_unknown_recording_setting_is_refused(admin: tenants_pb2_grpc.TenantAdminServiceStub) -> None:
    from leadflow.v1 import tenant_pb2, tenants_pb2

    bad = tenant_pb2.Tenant(
        name="t-" + uuid.uuid4().hex[:10], policy=tenant_pb2.TenantPolicy(recording="sometimes")
    )
    with pytest.raises(grpc.RpcError) as err:
        admin.ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=bad))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

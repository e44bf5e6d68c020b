"""ReserveCalls: many attempts gated and reserved at once, each answered as ReserveCall would."""

from __future__ import annotations

from datetime import timedelta

import grpc

from leadflow.v1 import compliance_pb2, compliance_pb2_grpc, decision_pb2, tenants_pb2, tenants_pb2_grpc
from leadflow_core.timestamps import to_proto
from services.compliance.tests.conftest import make_tenant
from services.compliance.tests.test_compliance_grpc import FL_PHONE, OPEN, lead, rule_ids


def _ask(msg: object, attempt: str) -> compliance_pb2.ReserveCallRequest:
    return compliance_pb2.ReserveCallRequest(
        lead=msg,  # type: ignore[arg-type]
        attempt_id=attempt,
        estimated_cost_usd="0.50",
        evaluate_at=to_proto(OPEN),
    )


def test_a_batch_reserves_within_limits_and_answers_each_item_alone(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(admin, limits={"callsPerMinute": 3, "concurrentCalls": 100}).name
    people = [lead(tenant, f"+1212555{3000 + i}") for i in range(4)]
    bad_phone = lead(tenant, "+1555")
    unknown_tenant = lead("no-such-tenant")
    # The same person twice in one batch: the second is answered after the first is stored.
    again_same_person = lead(tenant, "+12125553000")
    reply = compliance.ReserveCalls(
        compliance_pb2.ReserveCallsRequest(
            calls=[
                _ask(people[0], "b0"),
                _ask(bad_phone, "bad"),
                _ask(people[1], "b1"),
                _ask(unknown_tenant, "nt"),
                _ask(people[2], "b2"),
                _ask(again_same_person, "b0-again"),
                _ask(people[3], "b3"),
            ]
        )
    )
    items = list(reply.items)
    assert len(items) == 7
    assert items[1].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert items[3].error_code == grpc.StatusCode.NOT_FOUND.value[0]
    answered = [items[i].reply for i in (0, 2, 4, 6, 5)]
    actions = [a.decision.action for a in answered]
    # Three calls fit the minute; the rest are deferred with the limit's reason, never reserved.
    assert actions.count(decision_pb2.DIAL_ACTION_DIAL_NOW) == 3
    for a in answered:
        if a.decision.action == decision_pb2.DIAL_ACTION_DIAL_NOW:
            assert a.reservation_id
        else:
            assert a.decision.action == decision_pb2.DIAL_ACTION_DEFER
            assert "tenant.limit.minute" in rule_ids(a.decision)
            assert not a.reservation_id
    usage = admin.GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant)).usage
    assert usage.calls_today == 3
    assert usage.spend_today_usd == "1.50"
    # A repeated attempt (a redelivered job) gets the same answer and reserves nothing more.
    repeat = compliance.ReserveCalls(compliance_pb2.ReserveCallsRequest(calls=[_ask(people[0], "b0")]))
    assert repeat.items[0].reply.reservation_id == items[0].reply.reservation_id
    assert repeat.items[0].reply.decision.decision_id == items[0].reply.decision.decision_id
    single = compliance.ReserveCall(_ask(people[0], "b0"))
    assert single.reservation_id == items[0].reply.reservation_id
    assert admin.GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant)).usage.calls_today == 3
    # Every decision of the batch is audited.
    records = list(compliance.ExportAuditLog(compliance_pb2.ExportAuditLogRequest(tenant=tenant)))
    assert sum(1 for r in records if r.action == "reserve") == 5


def test_a_paused_tenant_is_deferred_in_a_batch_as_alone(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(admin).name
    admin.SetPaused(tenants_pb2.SetPausedRequest(name=tenant, paused=True, reason="billing"))
    msg = lead(tenant, "+12125553101")
    batch = (
        compliance.ReserveCalls(compliance_pb2.ReserveCallsRequest(calls=[_ask(msg, "p1")])).items[0].reply
    )
    alone = compliance.ReserveCall(_ask(msg, "p2"))
    assert batch.decision.action == alone.decision.action == decision_pb2.DIAL_ACTION_DEFER
    assert rule_ids(batch.decision) == rule_ids(alone.decision)
    assert not batch.reservation_id
    assert not alone.reservation_id


def test_stored_facts_about_each_person_gate_a_batch_as_they_gate_one_call(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    """The batch reads every person's facts at once: a person on the tenant's own list, one
    whose consent was revoked and one at Florida's attempt cap are each refused or deferred for
    their own reason, and the clean person beside them is reserved."""
    tenant = make_tenant(admin, limits={"callsPerMinute": 100, "concurrentCalls": 100}).name
    listed, revoked, clean = "+12125553201", "+12125553202", "+12125553203"
    compliance.AddDoNotCall(
        compliance_pb2.AddDoNotCallRequest(tenant=tenant, phone_e164=listed, reason="asked")
    )
    compliance.RecordContactAttempt(
        compliance_pb2.RecordContactAttemptRequest(
            tenant=tenant,
            phone_e164=revoked,
            channel="sms",
            content="STOP",
            at=to_proto(OPEN - timedelta(hours=1)),
        )
    )
    for i in range(3):
        compliance.RecordContactAttempt(
            compliance_pb2.RecordContactAttemptRequest(
                tenant=tenant, phone_e164=FL_PHONE, channel="call", at=to_proto(OPEN - timedelta(hours=3 - i))
            )
        )
    people = [lead(tenant, phone) for phone in (listed, revoked, FL_PHONE, clean)]
    batch = compliance.ReserveCalls(
        compliance_pb2.ReserveCallsRequest(calls=[_ask(p, f"s{i}") for i, p in enumerate(people)])
    )
    replies = [item.reply for item in batch.items]
    expected = ["dnc.internal", "consent.revoked", "state.FL.attempt_cap", None]
    for reply, rule in zip(replies, expected, strict=True):
        if rule is None:
            assert reply.decision.action == decision_pb2.DIAL_ACTION_DIAL_NOW
            assert reply.reservation_id
        else:
            assert reply.decision.action != decision_pb2.DIAL_ACTION_DIAL_NOW, rule
            assert rule in rule_ids(reply.decision)
            assert not reply.reservation_id
    # Each answered as a call alone is (a new attempt id, so nothing is repeated).
    for i, (p, reply) in enumerate(zip(people[:3], replies[:3], strict=True)):
        alone = compliance.ReserveCall(_ask(p, f"alone{i}"))
        assert alone.decision.action == reply.decision.action
        assert rule_ids(alone.decision) == rule_ids(reply.decision)

"""State rules and zone overrides through the real compliance process (Evaluate over gRPC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from leadflow.v1 import compliance_pb2_grpc, decision_pb2, tenants_pb2_grpc
from leadflow_core.timestamps import from_proto, to_proto
from services.compliance.tests.conftest import make_tenant
from services.compliance.tests.test_compliance_grpc import evaluate, lead, rule_ids


def _decide(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, tenant: str, phone: str, at: datetime
) -> decision_pb2.Decision:
    msg = lead(tenant, phone=phone)
    msg.consent.consented_at.CopyFrom(to_proto(at - timedelta(hours=1)))
    return evaluate(compliance, msg, at)


def test_unalaska_in_july_waits_for_0800_alaska_time(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(admin).name
    d = _decide(compliance, tenant, "+19075811234", datetime(2026, 7, 15, 5, 30, tzinfo=UTC))
    assert d.action == decision_pb2.DIAL_ACTION_DEFER, d
    assert from_proto(d.not_before) == datetime(2026, 7, 15, 16, 0, tzinfo=UTC)
    assert "federal.calling_hours" in rule_ids(d)


def test_sunday_rules_and_secondary_sources_in_the_decision(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(admin).name
    central, mountain = ZoneInfo("America/Chicago"), ZoneInfo("America/Denver")
    # Texas: Sunday from noon; the row rests on charts and the reason says so.
    tx = _decide(compliance, tenant, "+12145550100", datetime(2026, 11, 22, 10, 0, tzinfo=central))
    assert tx.action == decision_pb2.DIAL_ACTION_DEFER
    assert from_proto(tx.not_before) == datetime(2026, 11, 22, 12, 0, tzinfo=central)
    (reason,) = [r for r in tx.reasons if r.rule_id == "state.TX.calling_hours"]
    assert reason.statute == "Tex. Bus. & Com. Code 301.051 (effective 2009-04-01)"
    assert "secondary source" in reason.message
    # Utah: no Sunday calls at all; Monday 08:00.
    ut = _decide(compliance, tenant, "+18015550100", datetime(2026, 11, 22, 10, 0, tzinfo=mountain))
    assert from_proto(ut.not_before) == datetime(2026, 11, 23, 8, 0, tzinfo=mountain)
    (reason,) = [r for r in ut.reasons if r.rule_id == "state.UT.calling_hours"]
    assert reason.statute.startswith("Utah Code 13-25a-103(3)")
    assert "secondary" not in reason.message

"""SettleCalls: many calls settled at once, each answered as SettleCall would answer it."""

from __future__ import annotations

from collections import Counter

import grpc
import pytest

from leadflow.v1 import compliance_pb2, compliance_pb2_grpc, tenants_pb2, tenants_pb2_grpc
from services.compliance.tests.conftest import make_tenant
from services.compliance.tests.test_compliance_grpc import lead
from services.compliance.tests.test_reserve_calls import _ask

_C = compliance_pb2
# Four placed calls and one never placed, each of another person.
PHONES = [f"+1212555{3400 + i}" for i in range(5)]


def _reserved(compliance: compliance_pb2_grpc.ComplianceServiceStub, tenant: str) -> list[str]:
    items = compliance.ReserveCalls(
        _C.ReserveCallsRequest(calls=[_ask(lead(tenant, p), f"a{i}") for i, p in enumerate(PHONES)])
    ).items
    ids = [item.reply.reservation_id for item in items]
    assert all(ids), items
    return ids


def _reports(tenant: str, ids: list[str]) -> list[_C.SettleCallRequest]:
    """A batch as the relay may send it: fresh settlements at a price and at none, an opt-out
    heard in the call, a release, a second report of one call bringing its price, an unknown
    reservation, a price that is not one, and a tenant that does not exist."""

    def r(rid: str, outcome: int, cost: str = "", **kw: object) -> _C.SettleCallRequest:
        return _C.SettleCallRequest(
            tenant=tenant,
            reservation_id=rid,
            outcome=outcome,  # type: ignore[arg-type]
            actual_cost_usd=cost,
            **kw,  # type: ignore[arg-type]
        )

    return [
        r(ids[0], _C.CALL_OUTCOME_COMPLETED, "0.25", duration_seconds=40),
        r(ids[1], _C.CALL_OUTCOME_BUSY),
        r(ids[2], _C.CALL_OUTCOME_COMPLETED, "0.25", transcript="stop calling me"),
        r(ids[3], _C.CALL_OUTCOME_NOT_PLACED),
        r(ids[4], _C.CALL_OUTCOME_COMPLETED),
        r(ids[4], _C.CALL_OUTCOME_COMPLETED, "0.10"),
        r("0" * 32, _C.CALL_OUTCOME_COMPLETED, "0.01"),
        r(ids[0], _C.CALL_OUTCOME_COMPLETED, "not-a-price"),
        _C.SettleCallRequest(tenant="no-such-tenant", reservation_id=ids[1]),
    ]


def _one_by_one(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, reports: list[_C.SettleCallRequest]
) -> list[tuple[int, bool, bool]]:
    out = []
    for report in reports:
        try:
            reply = compliance.SettleCall(report)
            out.append((0, reply.settled, reply.consent_revoked))
        except grpc.RpcError as err:
            out.append((err.code().value[0], False, False))
    return out


def _usage(admin: tenants_pb2_grpc.TenantAdminServiceStub, tenant: str) -> tuple[int, int, str]:
    u = admin.GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant)).usage
    return u.calls_today, u.active_calls, u.spend_today_usd


def _audit_actions(compliance: compliance_pb2_grpc.ComplianceServiceStub, tenant: str) -> Counter[str]:
    records = compliance.ExportAuditLog(_C.ExportAuditLogRequest(tenant=tenant))
    return Counter(r.action for r in records if r.action.startswith("settle"))


@pytest.fixture
def limits() -> dict[str, int]:
    return {"callsPerMinute": 100, "concurrentCalls": 100}


def test_a_batch_settles_each_call_as_settle_call_would(
    compliance: compliance_pb2_grpc.ComplianceServiceStub,
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
    limits: dict[str, int],
) -> None:
    batched, alone = make_tenant(admin, limits=limits).name, make_tenant(admin, limits=limits).name
    batch_reports = _reports(batched, _reserved(compliance, batched))
    reply = compliance.SettleCalls(_C.SettleCallsRequest(calls=batch_reports))
    got = [(i.error_code, i.reply.settled, i.reply.consent_revoked) for i in reply.items]
    alone_reports = _reports(alone, _reserved(compliance, alone))
    want = _one_by_one(compliance, alone_reports)
    assert got == want
    invalid, not_found = grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.NOT_FOUND.value[0]
    assert got == [
        (0, True, False),
        (0, True, False),
        (0, True, True),
        (0, True, False),
        (0, True, False),
        (0, True, False),  # the price of a call settled a moment before at its estimate
        (0, False, False),
        (invalid, False, False),
        (not_found, False, False),
    ]
    assert "actual_cost_usd" in reply.items[7].error_message
    # Four calls count (the release gave its call back), none is active, and the day's spend is
    # each call's price, or its estimate where it has none: 0.25 + 0.50 + 0.25 + 0.10.
    assert _usage(admin, batched) == _usage(admin, alone) == (4, 0, "1.10")
    assert _audit_actions(compliance, batched) == _audit_actions(compliance, alone)
    assert _audit_actions(compliance, batched)["settle"] == 5
    # The person who said stop in the call is not called again.
    again = compliance.ReserveCall(_ask(lead(batched, PHONES[2]), "later"))
    assert not again.reservation_id
    # The batch again (a relay retrying after a lost answer) settles nothing and moves no total,
    # as the same reports one by one do.
    repeat = compliance.SettleCalls(_C.SettleCallsRequest(calls=batch_reports))
    repeated = [(i.error_code, i.reply.settled, i.reply.consent_revoked) for i in repeat.items]
    assert repeated == _one_by_one(compliance, alone_reports)
    assert not any(settled for _, settled, _ in repeated)
    assert _usage(admin, batched) == _usage(admin, alone) == (4, 0, "1.10")
    assert _audit_actions(compliance, batched) == _audit_actions(compliance, alone)


def test_a_batch_over_the_limit_is_refused_whole(
    compliance: compliance_pb2_grpc.ComplianceServiceStub,
) -> None:
    too_many = [_C.SettleCallRequest(tenant="t", reservation_id=str(i)) for i in range(501)]
    with pytest.raises(grpc.RpcError) as err:
        compliance.SettleCalls(_C.SettleCallsRequest(calls=too_many))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

"""EvaluateBatch answers every request exactly as one-by-one Evaluate calls would, item by item,
and a tenant change reaches the very next batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from leadflow.v1 import (
    compliance_pb2,
    compliance_pb2_grpc,
    decision_pb2,
    lead_pb2,
    tenants_pb2,
    tenants_pb2_grpc,
)
from leadflow_core.db import normalise_url
from leadflow_core.grpc_clients import channel
from leadflow_core.grpc_errors import field_violations
from leadflow_core.testing import ServiceProcess, python_module, service_env, wait_for
from leadflow_core.timestamps import to_proto
from services.compliance.tests.conftest import make_tenant

# A Tuesday, 10:00 in New York: inside federal calling hours.
OPEN = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
CONSENTED = OPEN - timedelta(days=1)
PHONES = ("+12125550101", "+12125550102", "+13055550103", "+1555", "")
TENANT_KINDS = ("active", "other", "paused", "unknown")


def _lead(tenant: str, phone: str, consent: bool, is_test: bool) -> lead_pb2.Lead:
    return lead_pb2.Lead(
        lead_id=uuid.uuid4().hex,
        tenant=tenant,
        source=lead_pb2.SOURCE_API,
        is_test=is_test,
        contact=lead_pb2.Contact(phone=lead_pb2.Phone(e164=phone)),
        consent=lead_pb2.ConsentEvidence(
            granted=consent,
            disclosure_text="I agree to be called",
            consented_at=to_proto(CONSENTED),
            seller=tenant,
            form_submission_id=f"sub-{phone}",
        ),
    )


def _request(lead: lead_pb2.Lead | None) -> compliance_pb2.EvaluateRequest:
    req = compliance_pb2.EvaluateRequest(
        evaluate_at=to_proto(OPEN), purpose=compliance_pb2.EVALUATION_PURPOSE_INGEST, actor="test"
    )
    if lead is not None:
        req.lead.CopyFrom(lead)
    return req


def _decision_view(d: decision_pb2.Decision) -> tuple[Any, ...]:
    """What a decision says, without its id and timestamp."""
    return (
        d.action,
        tuple((r.rule_id, r.action, r.not_before.seconds) for r in d.reasons),
        d.HasField("not_before") and d.not_before.seconds,
        d.needs_review,
        d.recording_allowed,
        tuple(d.blocked_features),
    )


def _single(
    stub: compliance_pb2_grpc.ComplianceServiceStub, req: compliance_pb2.EvaluateRequest
) -> tuple[Any, ...]:
    try:
        return ("ok", _decision_view(stub.Evaluate(req).decision))
    except grpc.RpcError as err:
        return ("error", err.code().value[0], tuple(field_violations(err)))


def _batch_item(result: compliance_pb2.EvaluateBatchResult) -> tuple[Any, ...]:
    if result.WhichOneof("outcome") == "response":
        return ("ok", _decision_view(result.response.decision))
    e = result.error
    return ("error", e.code, ((e.field, e.field_description),) if e.field else ())


def _world(admin: tenants_pb2_grpc.TenantAdminServiceStub) -> dict[str, str]:
    paused = make_tenant(admin).name
    admin.SetPaused(tenants_pb2.SetPausedRequest(name=paused, paused=True, reason="billing"))
    return {
        "active": make_tenant(admin).name,
        "other": make_tenant(admin, policy={"defaultRegion": "US"}).name,
        "paused": paused,
        "unknown": f"t-missing-{uuid.uuid4().hex[:6]}",
    }


@pytest.fixture(scope="module")
def tenants(admin: tenants_pb2_grpc.TenantAdminServiceStub) -> dict[str, str]:
    return _world(admin)


items = st.lists(
    st.tuples(
        st.sampled_from(TENANT_KINDS),
        st.sampled_from(PHONES),
        st.booleans(),  # consent
        st.booleans(),  # test lead
        st.booleans(),  # lead missing altogether
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=items)
def test_batch_answers_like_one_by_one_calls(
    compliance: compliance_pb2_grpc.ComplianceServiceStub,
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
    batch: list[tuple[str, str, bool, bool, bool]],
) -> None:
    # Two worlds with the same shape, so what one run records (consent) cannot leak into the other.
    batched_world, single_world = _world(admin), _world(admin)

    def requests(world: dict[str, str]) -> list[compliance_pb2.EvaluateRequest]:
        return [
            _request(None if missing else _lead(world[kind], phone, consent, is_test and phone != ""))
            for kind, phone, consent, is_test, missing in batch
        ]

    answered = compliance.EvaluateBatch(compliance_pb2.EvaluateBatchRequest(requests=requests(batched_world)))
    assert len(answered.results) == len(batch)
    assert [_batch_item(r) for r in answered.results] == [
        _single(compliance, r) for r in requests(single_world)
    ]


def test_every_evaluated_lead_of_a_batch_is_audited_once(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, tenants: dict[str, str], database_url: str
) -> None:
    good = [_lead(tenants["active"], p, True, False) for p in PHONES[:3]]
    bad = _lead(tenants["active"], "+1555", True, False)
    requests = [_request(good[0]), _request(bad), _request(good[1]), _request(good[2])]
    results = compliance.EvaluateBatch(compliance_pb2.EvaluateBatchRequest(requests=requests)).results
    assert [r.WhichOneof("outcome") for r in results] == ["response", "error", "response", "response"]
    assert results[1].error.field == "lead.contact.phone.e164"
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT lead_id, count(*) FROM compliance_audit"
                    " WHERE lead_id = ANY(:ids) GROUP BY lead_id"
                ),
                {"ids": [g.lead_id for g in [*good, bad]]},
            ).all()
    finally:
        engine.dispose()
    assert dict(rows) == {g.lead_id: 1 for g in good}


def test_a_pause_and_a_resume_reach_the_next_batch(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(admin).name

    def rules() -> set[str]:
        req = _request(_lead(tenant, "+12125550177", True, False))
        (result,) = compliance.EvaluateBatch(compliance_pb2.EvaluateBatchRequest(requests=[req])).results
        return {r.rule_id for r in result.response.decision.reasons}

    assert "tenant.paused" not in rules()
    admin.SetPaused(tenants_pb2.SetPausedRequest(name=tenant, paused=True, reason="billing"))
    assert "tenant.paused" in rules()  # no stale window: the change went through this process
    admin.SetPaused(tenants_pb2.SetPausedRequest(name=tenant, paused=False))
    assert "tenant.paused" not in rules()


@pytest.fixture(scope="module")
def second_compliance(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[compliance_pb2_grpc.ComplianceServiceStub]:
    """Another compliance process on the same database that would keep tenants for an hour
    if nobody told it about changes."""
    env = service_env(
        database_url,
        redis_url,
        redis_prefix,
        {"LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:0", "LEADFLOW_TENANT_CACHE_SECONDS": "3600"},
    )
    proc = ServiceProcess(
        "compliance-b", python_module("leadflow_compliance"), env, tmp_path_factory.mktemp("b")
    )
    proc.start()
    ch = channel(proc.addr, default_timeout=30.0)
    try:
        yield compliance_pb2_grpc.ComplianceServiceStub(ch)
    finally:
        ch.close()
        proc.stop()


def test_a_change_made_through_another_process_reaches_this_ones_next_batch(
    second_compliance: compliance_pb2_grpc.ComplianceServiceStub,
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
) -> None:
    tenant = make_tenant(admin).name

    def paused_on_b() -> bool:
        req = _request(_lead(tenant, "+12125550178", True, False))
        (result,) = second_compliance.EvaluateBatch(
            compliance_pb2.EvaluateBatchRequest(requests=[req])
        ).results
        return "tenant.paused" in {r.rule_id for r in result.response.decision.reasons}

    assert not paused_on_b()  # B has the tenant cached now, for up to an hour
    admin.SetPaused(tenants_pb2.SetPausedRequest(name=tenant, paused=True, reason="billing"))  # through A
    # B hears the NOTIFY within milliseconds; the bound is generous for a loaded CI machine.
    wait_for(lambda: True if paused_on_b() else None, 10, what="B to see the pause")
    admin.SetPaused(tenants_pb2.SetPausedRequest(name=tenant, paused=False))
    wait_for(lambda: True if not paused_on_b() else None, 10, what="B to see the resume")

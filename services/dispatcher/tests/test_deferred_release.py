"""A tenant change announced by compliance releases that tenant's deferred dials at once, in
priority order; dials waiting for their dial delay, and other tenants' dials, stay as they were."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from leadflow.v1 import decision_pb2, dispatcher_pb2, dispatcher_pb2_grpc, lead_pb2
from leadflow_core.db import normalise_url
from leadflow_core.tenant_changes import announce
from leadflow_core.testing import ServiceProcess, wait_for
from leadflow_core.timestamps import to_proto

from .conftest import dial_now, make_lead

Stub = dispatcher_pb2_grpc.DispatcherServiceStub


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_engine(normalise_url(database_url))
    yield eng
    eng.dispose()


def defer_hours(stub: Stub, tenant: str, tag: str, urgency: int, phone: str) -> str:
    later = datetime.now(UTC) + timedelta(hours=10)
    reply = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(
            lead=make_lead(tenant, tag, phone=phone, urgency=urgency),
            decision=decision_pb2.Decision(action=decision_pb2.DIAL_ACTION_DEFER, not_before=to_proto(later)),
        )
    )
    assert reply.dial_state == dispatcher_pb2.DIAL_STATE_DEFERRED
    return str(reply.lead_id)


def dial_jobs(engine: Engine, tenant: str) -> dict[str, tuple[str, datetime]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT lead_id, state, due_at FROM dispatcher_jobs WHERE tenant = :t AND kind = 'dial'"),
            {"t": tenant},
        ).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_tenant_change_releases_deferred_dials_in_priority_order(
    dispatcher_proc: ServiceProcess, stub: Stub, engine: Engine, rds: redis.Redis
) -> None:
    tenant, other = f"t-{uuid.uuid4().hex[:10]}", f"t-{uuid.uuid4().hex[:10]}"
    low = defer_hours(stub, tenant, "low", lead_pb2.URGENCY_LOW, "+13055551001")
    high = defer_hours(stub, tenant, "high", lead_pb2.URGENCY_HIGH, "+13055551002")
    emergency = defer_hours(stub, tenant, "emergency", lead_pb2.URGENCY_EMERGENCY, "+13055551003")
    medium = defer_hours(stub, tenant, "medium", lead_pb2.URGENCY_MEDIUM, "+13055551004")
    elsewhere = defer_hours(stub, other, "other", lead_pb2.URGENCY_HIGH, "+13055551005")
    # Allowed, but waiting for the low urgency's dial delay (an hour here): not a deferral.
    delayed = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(
            lead=make_lead(tenant, "delayed", phone="+13055551006", urgency=lead_pb2.URGENCY_LOW),
            decision=dial_now(),
        )
    ).lead_id
    before = dial_jobs(engine, tenant)
    announce(engine, tenant)  # what compliance does after a resume or a limit change commits

    released = (low, high, emergency, medium)
    wait_for(
        lambda: all(dial_jobs(engine, tenant)[i][0] == "queued" for i in released),
        timeout=30,
        what="the deferred dials enqueued",
    )
    after = dial_jobs(engine, tenant)
    order = sorted(released, key=lambda i: after[i][1])
    assert order == [emergency, high, medium, low]
    assert all(after[i][1] < before[i][1] - timedelta(hours=9) for i in released)
    assert after[delayed] == before[delayed]
    assert dial_jobs(engine, other)[elsewhere][0] == "pending"
    # Leave no work behind for later modules' dispatchers on this session's database.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE dispatcher_jobs SET state = 'cancelled' WHERE tenant IN (:t, :o)"),
            {"t": tenant, "o": other},
        )

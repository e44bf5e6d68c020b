"""SubmitLeads: one transaction per batch, answers item by item exactly as one-by-one SubmitLead
calls would; duplicates inside a batch collapse to one lead; a failed transaction stores none."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text

from leadflow.v1 import decision_pb2, dispatcher_pb2, dispatcher_pb2_grpc
from leadflow_core.db import normalise_url
from services.dispatcher.tests.conftest import make_lead

Stub = dispatcher_pb2_grpc.DispatcherServiceStub
ACTIONS = (decision_pb2.DIAL_ACTION_DIAL_NOW, decision_pb2.DIAL_ACTION_NEVER, decision_pb2.DIAL_ACTION_DEFER)


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    e = create_engine(normalise_url(database_url))
    yield e
    e.dispose()


def _request(
    tenant: str, slot: tuple[int, int, int, int, bool], world: str
) -> dispatcher_pb2.SubmitLeadRequest:
    vendor, idem, person, action, invalid = slot
    lead = make_lead(
        "" if invalid else tenant,
        f"v{vendor}" if vendor else "",
        idem=f"k{idem}" if idem else "",
        phone=f"+1212555{person:04d}",
    )
    decision = decision_pb2.Decision(decision_id=uuid.uuid4().hex, action=ACTIONS[action])
    if decision.action == decision_pb2.DIAL_ACTION_DEFER:
        decision.not_before.FromSeconds(4102444800)  # 2100: stays deferred
    return dispatcher_pb2.SubmitLeadRequest(lead=lead, decision=decision)


def _views(answers: list[tuple[str, Any]]) -> list[tuple[Any, ...]]:
    """Answers with lead ids replaced by the index of the first answer naming that lead."""
    first: dict[str, int] = {}
    out: list[tuple[Any, ...]] = []
    for i, (kind, value) in enumerate(answers):
        if kind == "error":
            out.append(("error", value))
            continue
        resp: dispatcher_pb2.SubmitLeadResponse = value
        lead_ref = first.setdefault(resp.lead_id, i)
        joined_ref = first.get(resp.joined_lead_id, -1) if resp.joined_lead_id else None
        out.append(("ok", lead_ref, resp.duplicate, resp.dial_state, joined_ref))
    return out


slots = st.lists(
    st.tuples(
        st.integers(0, 3),  # vendor lead id (0: none)
        st.integers(0, 3),  # idempotency key (0: none)
        st.integers(0, 3),  # person (phone)
        st.integers(0, 2),  # decision
        st.booleans(),  # invalid: no tenant
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=slots)
def test_batch_stores_and_answers_like_one_by_one_calls(
    stub: Stub, batch: list[tuple[int, int, int, int, bool]]
) -> None:
    batch_tenant, single_tenant = f"b-{uuid.uuid4().hex[:10]}", f"s-{uuid.uuid4().hex[:10]}"
    reply = stub.SubmitLeads(
        dispatcher_pb2.SubmitLeadsRequest(requests=[_request(batch_tenant, s, "b") for s in batch])
    )
    batched: list[tuple[str, Any]] = [
        ("ok", r.response) if r.WhichOneof("outcome") == "response" else ("error", r.error.code)
        for r in reply.results
    ]
    single: list[tuple[str, Any]] = []
    for s in batch:
        try:
            single.append(("ok", stub.SubmitLead(_request(single_tenant, s, "s"))))
        except grpc.RpcError as err:
            single.append(("error", err.code().value[0]))
    assert _views(batched) == _views(single)


def test_duplicates_in_one_batch_collapse_to_one_lead(stub: Stub, tenant: str, engine: Engine) -> None:
    requests = [
        dispatcher_pb2.SubmitLeadRequest(
            lead=make_lead(tenant, "same", phone="+12125550111"),
            decision=decision_pb2.Decision(action=decision_pb2.DIAL_ACTION_DIAL_NOW),
        )
        for _ in range(3)
    ]
    results = stub.SubmitLeads(dispatcher_pb2.SubmitLeadsRequest(requests=requests)).results
    ids = {r.response.lead_id for r in results}
    assert len(ids) == 1
    assert [r.response.duplicate for r in results] == [False, True, True]
    with engine.connect() as conn:
        leads = conn.execute(
            text("SELECT count(*) FROM dispatcher_leads WHERE tenant = :t"), {"t": tenant}
        ).scalar()
        dials = conn.execute(
            text("SELECT count(*) FROM dispatcher_jobs WHERE tenant = :t AND kind = 'dial'"), {"t": tenant}
        ).scalar()
    assert (leads, dials) == (1, 1)


def test_a_batch_finds_the_leads_earlier_batches_stored(stub: Stub, tenant: str, engine: Engine) -> None:
    """The batch's duplicate lookup (one query for the whole batch) answers as one by one: by
    vendor id, by idempotency key, and the vendor's own id first when the two name different
    stored leads."""

    def submit(*leads: Any) -> list[dispatcher_pb2.SubmitLeadResponse]:
        reply = stub.SubmitLeads(
            dispatcher_pb2.SubmitLeadsRequest(
                requests=[
                    dispatcher_pb2.SubmitLeadRequest(
                        lead=lead, decision=decision_pb2.Decision(action=decision_pb2.DIAL_ACTION_DIAL_NOW)
                    )
                    for lead in leads
                ]
            )
        )
        return [r.response for r in reply.results]

    first = submit(
        make_lead(tenant, "va", phone="+12125550131"),
        make_lead(tenant, idem="ka", phone="+12125550132"),
    )
    again = submit(
        make_lead(tenant, "va", phone="+12125550133"),
        make_lead(tenant, idem="ka", phone="+12125550134"),
        make_lead(tenant, "va", idem="ka", phone="+12125550135"),
        make_lead(tenant, "vb", phone="+12125550136"),
    )
    assert [a.duplicate for a in again] == [True, True, True, False]
    assert [a.lead_id for a in again[:3]] == [first[0].lead_id, first[1].lead_id, first[0].lead_id]
    with engine.connect() as conn:
        leads = conn.execute(
            text("SELECT count(*) FROM dispatcher_leads WHERE tenant = :t"), {"t": tenant}
        ).scalar()
    assert leads == 3


def test_a_bad_lead_fails_alone(stub: Stub, tenant: str) -> None:
    requests = [
        dispatcher_pb2.SubmitLeadRequest(
            lead=make_lead(t, f"v{i}", phone=f"+1212555012{i}"),
            decision=decision_pb2.Decision(action=decision_pb2.DIAL_ACTION_NEVER),
        )
        for i, t in enumerate((tenant, "", tenant))
    ]
    results = stub.SubmitLeads(dispatcher_pb2.SubmitLeadsRequest(requests=requests)).results
    assert [r.WhichOneof("outcome") for r in results] == ["response", "error", "response"]
    assert results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert results[1].error.field == "lead.tenant"


@pytest.fixture
def poisoned(engine: Engine) -> Iterator[str]:
    """A check PostgreSQL runs at COMMIT: a batch holding the poisoned lead cannot commit."""
    marker = f"poison-{uuid.uuid4().hex[:8]}"
    fn, trig = f"test_{marker.replace('-', '_')}", f"test_{marker.replace('-', '_')}_trg"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.vendor_lead_id = '{marker}' THEN RAISE EXCEPTION 'poisoned batch'; END IF; "
                "RETURN NULL; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE CONSTRAINT TRIGGER {trig} AFTER INSERT ON dispatcher_leads "
                f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {fn}()"
            )
        )
    yield marker
    with engine.begin() as conn:
        conn.execute(text(f"DROP TRIGGER {trig} ON dispatcher_leads"))
        conn.execute(text(f"DROP FUNCTION {fn}()"))


def test_a_batch_whose_transaction_fails_stores_none_of_it(
    stub: Stub, tenant: str, engine: Engine, poisoned: str
) -> None:
    requests = [
        dispatcher_pb2.SubmitLeadRequest(
            lead=make_lead(tenant, vendor, phone=f"+1212555013{i}"),
            decision=decision_pb2.Decision(action=decision_pb2.DIAL_ACTION_DIAL_NOW),
        )
        for i, vendor in enumerate(("good-1", poisoned, "good-2"))
    ]
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitLeads(dispatcher_pb2.SubmitLeadsRequest(requests=requests))
    # The gateway answers every sender of the batch 503 for these codes.
    assert err.value.code() in (
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
    )
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM dispatcher_leads WHERE tenant = :t"), {"t": tenant}
        ).scalar()
        jobs = conn.execute(
            text("SELECT count(*) FROM dispatcher_jobs WHERE tenant = :t"), {"t": tenant}
        ).scalar()
    assert (stored, jobs) == (0, 0)
    # Without the poisoned lead the same leads go through: nothing was left half-written.
    again = stub.SubmitLeads(dispatcher_pb2.SubmitLeadsRequest(requests=[requests[0], requests[2]])).results
    assert [r.response.duplicate for r in again] == [False, False]

"""RecordCallStatuses (the gateway's batched status callbacks) against a real dispatcher process:
a batch answers and changes exactly what the same reports sent one by one do."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import grpc
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from leadflow.v1 import dispatcher_pb2, dispatcher_pb2_grpc

from .conftest import dial_now, make_lead

Stub = dispatcher_pb2_grpc.DispatcherServiceStub
Request = dispatcher_pb2.RecordCallStatusRequest

STATUSES = ("ringing", "in-progress", "completed", "busy", "no-answer")


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    """This module's dispatcher on a database of its own: its calls are left without a final
    status, which later modules' reconcile queries (over every call) would otherwise find."""
    return module_database_url


@dataclass(frozen=True)
class World:
    """One tenant's leads: two placed calls (CA0, CA1) and one attempt whose create went
    unanswered (its call CA2 is known only by the attempt id marker of its callbacks)."""

    tenant: str
    leads: tuple[str, ...]
    unanswered_attempt: str


def build_world(stub: Stub, tenant: str) -> World:
    leads = []
    unanswered = ""
    for n in range(3):
        lead = stub.SubmitLead(
            dispatcher_pb2.SubmitLeadRequest(
                lead=make_lead(tenant, f"v{n}", phone=f"+1305555{n:04d}"), decision=dial_now()
            )
        )
        claim = stub.ClaimDialAttempt(
            dispatcher_pb2.ClaimDialAttemptRequest(tenant=tenant, lead_id=lead.lead_id, attempt=1)
        )
        assert claim.claimed
        if n < 2:
            stub.CompleteDialAttempt(
                dispatcher_pb2.CompleteDialAttemptRequest(
                    tenant=tenant,
                    attempt_id=claim.attempt_id,
                    provider_call_id=f"CA{n}",
                    provider="simulator",
                )
            )
        else:
            unanswered = claim.attempt_id
        leads.append(lead.lead_id)
    return World(tenant, tuple(leads), unanswered)


# A report: (call number 0-3, status, with a price, carries the attempt marker). CA3 belongs to
# no attempt at all: its reports are kept for a completion that never comes.
reports = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(STATUSES), st.booleans(), st.booleans()),
    min_size=1,
    max_size=12,
)


def to_request(world: World, report: tuple[int, str, bool, bool]) -> Request:
    call, status, priced, marked = report
    return Request(
        tenant=world.tenant,
        provider_call_id=f"CA{call}",
        status=status,
        duration_seconds=7 if status == "completed" else 0,
        price_usd="0.0130" if priced else "",
        params={"CallStatus": status},
        attempt_id=world.unanswered_attempt if marked and call == 2 else "",
    )


def answer(world: World, reply: dispatcher_pb2.RecordCallStatusResponse) -> tuple[bool, int]:
    """(applied, which of the world's leads), so two worlds' answers compare."""
    return reply.applied, world.leads.index(reply.lead_id) if reply.lead_id else -1


def timelines(stub: Stub, world: World) -> list[list[tuple[str, str]]]:
    out = []
    for lead_id in world.leads:
        reply = stub.GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=world.tenant, lead_id=lead_id))
        out.append([(e.kind, _status_of(e.detail_json)) for e in reply.events])
    return out


def _status_of(detail_json: str) -> str:
    import json

    detail = json.loads(detail_json or "{}")
    return f"{detail.get('status', '')}|{detail.get('price_usd', '')}|{detail.get('call_id', '')}"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=reports)
def test_a_batch_answers_and_applies_as_its_reports_one_by_one(
    stub: Stub, batch: list[tuple[int, str, bool, bool]]
) -> None:
    base = f"t-{uuid.uuid4().hex[:10]}"
    single, batched = build_world(stub, f"{base}-1"), build_world(stub, f"{base}-n")
    one_by_one = [answer(single, stub.RecordCallStatus(to_request(single, r))) for r in batch]
    reply = stub.RecordCallStatuses(
        dispatcher_pb2.RecordCallStatusesRequest(requests=[to_request(batched, r) for r in batch])
    )
    assert [r.WhichOneof("outcome") for r in reply.results] == ["response"] * len(batch)
    assert [answer(batched, r.response) for r in reply.results] == one_by_one
    # And what each answer must be on its own: a status first seen is applied, and a placed
    # call's report always names its lead.
    first_seen = {(call, status): i for i, (call, status, _, _) in reversed(list(enumerate(batch)))}
    assert all(one_by_one[i][0] for i in first_seen.values())
    assert all(one_by_one[i][1] == call for i, (call, *_) in enumerate(batch) if call < 2)
    assert timelines(stub, batched) == timelines(stub, single)
    # Sent again, the whole batch is a repeat: nothing applies a second time.
    again = stub.RecordCallStatuses(
        dispatcher_pb2.RecordCallStatusesRequest(requests=[to_request(batched, r) for r in batch])
    )
    repeats = [stub.RecordCallStatus(to_request(single, r)) for r in batch]
    repeated = [answer(single, r) for r in repeats]
    assert [answer(batched, r.response) for r in again.results] == repeated
    assert all(repeated[i][1] == call for i, (call, *_) in enumerate(batch) if call < 2)
    assert not any(
        applied for (applied, _), (_, _, priced, _) in zip(repeated, batch, strict=True) if not priced
    )
    assert timelines(stub, batched) == timelines(stub, single)


def test_an_invalid_report_fails_alone(stub: Stub, tenant: str) -> None:
    world = build_world(stub, tenant)
    reply = stub.RecordCallStatuses(
        dispatcher_pb2.RecordCallStatusesRequest(
            requests=[
                Request(tenant=tenant, provider_call_id="CA0", status="ringing"),
                Request(tenant=tenant, provider_call_id="CA0", status=""),
                Request(tenant=tenant, provider_call_id="CA0", status="completed", duration_seconds=4),
            ]
        )
    )
    outcomes = [r.WhichOneof("outcome") for r in reply.results]
    assert outcomes == ["response", "error", "response"]
    assert reply.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "status" in reply.results[1].error.message
    assert [answer(world, reply.results[i].response) for i in (0, 2)] == [(True, 0), (True, 0)]
    kinds = [k for k, _ in timelines(stub, world)[0]]
    assert kinds.count("call_status") == 2


def test_the_marker_adopts_the_call_for_the_rest_of_its_batch(stub: Stub, tenant: str) -> None:
    """The first callback of an unanswered create carries the attempt id: it makes the call that
    attempt's, and a later report of the same call in the same batch (no marker) applies to it."""
    world = build_world(stub, tenant)
    reply = stub.RecordCallStatuses(
        dispatcher_pb2.RecordCallStatusesRequest(
            requests=[
                Request(
                    tenant=tenant,
                    provider_call_id="CA2",
                    status="ringing",
                    attempt_id=world.unanswered_attempt,
                ),
                Request(tenant=tenant, provider_call_id="CA2", status="completed", duration_seconds=9),
            ]
        )
    )
    assert [answer(world, r.response) for r in reply.results] == [(True, 2), (True, 2)]
    events = timelines(stub, world)[2]
    assert ("dialed", "||CA2") in events
    assert [e for e in events if e[0] == "call_status"] == [
        ("call_status", "ringing||CA2"),
        ("call_status", "completed||CA2"),
    ]


def _claimed(stub: Stub, tenant: str, name: str, phone: str) -> tuple[str, str]:
    """A new lead allowed to dial now and its first attempt claimed: (lead id, attempt id)."""
    lead = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(lead=make_lead(tenant, name, phone=phone), decision=dial_now())
    )
    claim = stub.ClaimDialAttempt(
        dispatcher_pb2.ClaimDialAttemptRequest(tenant=tenant, lead_id=lead.lead_id, attempt=1)
    )
    return lead.lead_id, claim.attempt_id


def test_a_reserved_call_is_settled_once_and_priced_once(stub: Stub, tenant: str, engine: Engine) -> None:
    lead_id, attempt_id = _claimed(stub, tenant, "settled", "+13055550177")
    call = f"CA{uuid.uuid4().hex[:12]}"
    stub.CompleteDialAttempt(
        dispatcher_pb2.CompleteDialAttemptRequest(
            tenant=tenant,
            attempt_id=attempt_id,
            provider_call_id=call,
            provider="simulator",
            reservation_id="res-settled",
        )
    )

    def report(price: str = "") -> Request:
        return Request(
            tenant=tenant,
            provider_call_id=call,
            status="completed",
            duration_seconds=30,
            price_usd=price,
            params={"CallStatus": "completed"},
        )

    # The reconciler's status lookup of a call whose end had not come: finished by the end.
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO dispatcher_jobs (id, tenant, lead_id, kind, attempt, queue, state,"
                " due_at, enqueue_count, broker_queue, broker_message_id, payload, request_id,"
                " last_error, updated_at)"
                " VALUES (:id, :t, :l, 'call_status', 1, 'call_status', 'queued', now(), 1, '', '',"
                " '{}', '', '', now())"
            ),
            {"id": uuid.uuid4().hex, "t": tenant, "l": lead_id},
        )
    stub.RecordCallStatuses(dispatcher_pb2.RecordCallStatusesRequest(requests=[report(), report()]))
    priced = [stub.RecordCallStatus(report("0.0140")).applied for _ in range(2)]
    with engine.connect() as conn:
        jobs = conn.execute(
            sa.text("SELECT kind, payload FROM dispatcher_jobs WHERE tenant = :t AND lead_id = :l"),
            {"t": tenant, "l": lead_id},
        ).all()
    settles = sorted(
        (kind, payload["status"], payload["price_usd"]) for kind, payload in jobs if "settle" in kind
    )
    assert settles == [("settle", "completed", ""), ("settle_price", "completed", "0.0140")]
    assert {payload["reservation_id"] for kind, payload in jobs if "settle" in kind} == {"res-settled"}
    assert priced == [True, False]
    # Completed: no retry, so no second dial job.
    assert sorted(kind for kind, _ in jobs).count("dial") == 1
    with engine.connect() as conn:
        lookups = (
            conn.execute(
                sa.text(
                    "SELECT state FROM dispatcher_jobs"
                    " WHERE tenant = :t AND lead_id = :l AND kind = 'call_status'"
                ),
                {"t": tenant, "l": lead_id},
            )
            .scalars()
            .all()
        )
    assert lookups == ["done"]


def _settles(engine: Engine, tenant: str, lead_id: str) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        jobs = conn.execute(
            sa.text("SELECT kind, payload FROM dispatcher_jobs WHERE tenant = :t AND lead_id = :l"),
            {"t": tenant, "l": lead_id},
        ).all()
    return sorted((kind, p["status"], p["reservation_id"]) for kind, p in jobs if kind.startswith("settle"))


def test_a_dial_that_never_placed_its_call_releases_its_reservation_once(
    stub: Stub, tenant: str, engine: Engine
) -> None:
    lead_id, attempt_id = _claimed(stub, tenant, "unplaced", "+13055550178")
    failed = dispatcher_pb2.CompleteDialAttemptRequest(
        tenant=tenant,
        attempt_id=attempt_id,
        provider="simulator",
        reservation_id="res-unplaced",
        error="provider refused the call",
    )
    stub.CompleteDialAttempt(failed)
    assert _settles(engine, tenant, lead_id) == [("settle", "not-placed", "res-unplaced")]


@pytest.mark.parametrize("batched", [False, True], ids=["CompleteDialAttempt", "CompleteDials"])
def test_a_callback_that_outran_its_dial_report_settles_when_the_report_comes(
    stub: Stub, tenant: str, engine: Engine, batched: bool
) -> None:
    lead_id, attempt_id = _claimed(stub, tenant, "outran", "+13055550179")
    call = f"CA{uuid.uuid4().hex[:12]}"
    early = Request(
        tenant=tenant,
        provider_call_id=call,
        status="no-answer",
        duration_seconds=0,
        params={"CallStatus": "no-answer"},
    )
    stub.RecordCallStatuses(dispatcher_pb2.RecordCallStatusesRequest(requests=[early]))
    assert _settles(engine, tenant, lead_id) == []  # no attempt knows the call yet
    placed = dispatcher_pb2.CompleteDialAttemptRequest(
        tenant=tenant,
        attempt_id=attempt_id,
        provider_call_id=call,
        provider="simulator",
        reservation_id="res-outran",
    )
    for _ in range(2):  # the second time redelivered: changes nothing
        if batched:
            stub.CompleteDials(dispatcher_pb2.CompleteDialsRequest(attempts=[placed]))
        else:
            stub.CompleteDialAttempt(placed)
    assert _settles(engine, tenant, lead_id) == [("settle", "no-answer", "res-outran")]

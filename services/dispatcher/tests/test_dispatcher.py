"""DispatcherService against a real process, PostgreSQL and Redis."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis
from dramatiq import Message

from leadflow.v1 import decision_pb2, dispatcher_pb2, dispatcher_pb2_grpc
from leadflow_core.testing import ServiceProcess, wait_for
from leadflow_core.timestamps import to_proto

from .conftest import dial_now, make_lead

Stub = dispatcher_pb2_grpc.DispatcherServiceStub


def queued_leads(rds: redis.Redis, prefix: str, queue: str) -> list[tuple[str, tuple[object, ...]]]:
    """(actor, args) of every message waiting in a queue or its delay queue."""
    out = []
    for name in (queue, f"{queue}.DQ"):
        for body in rds.hvals(f"{prefix}dramatiq:{name}.msgs"):
            m = Message.decode(body if isinstance(body, bytes) else body.encode())
            out.append((m.actor_name, m.args))
    return out


def kinds(stub: Stub, tenant: str, lead_id: str) -> list[str]:
    reply = stub.GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=tenant, lead_id=lead_id))
    return [e.kind for e in reply.events]


def test_submit_is_idempotent_and_enqueues_once(
    stub: Stub, tenant: str, rds: redis.Redis, redis_prefix: str
) -> None:
    lead = make_lead(tenant, "v-1")
    first = stub.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=lead, decision=dial_now()))
    again = stub.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=lead, decision=dial_now()))
    assert not first.duplicate
    assert again.duplicate
    assert again.lead_id == first.lead_id
    assert first.dial_state == dispatcher_pb2.DIAL_STATE_SCHEDULED
    for queue, actor, args in (
        ("enrich", "enrich", (tenant, first.lead_id)),
        ("crm_sync", "crm_sync", (tenant, first.lead_id)),
        ("dial.high", "dial", (tenant, first.lead_id, 1)),
    ):
        found = [a for a in queued_leads(rds, redis_prefix, queue) if a[1][:2] == (tenant, first.lead_id)]
        assert found == [(actor, args)], queue
    # The redelivery shows on the timeline (and in the admin lead statistics), nothing more.
    assert kinds(stub, tenant, first.lead_id) == [
        "received",
        "decided",
        "dial_scheduled",
        "duplicate_received",
    ]


def test_idempotency_key_dedupes(stub: Stub, tenant: str) -> None:
    a = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(lead=make_lead(tenant, idem="k1"), decision=dial_now())
    )
    b = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(lead=make_lead(tenant, idem="k1"), decision=dial_now())
    )
    assert b.duplicate
    assert b.lead_id == a.lead_id


def test_reads_are_scoped_by_tenant(stub: Stub, tenant: str) -> None:
    reply = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(lead=make_lead(tenant, "v-x"), decision=dial_now())
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.GetLead(dispatcher_pb2.GetLeadRequest(tenant="someone-else", lead_id=reply.lead_id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stub.GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant="someone-else", lead_id=reply.lead_id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Same vendor id under another tenant is another lead.
    other = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(lead=make_lead(tenant + "b", "v-x"), decision=dial_now())
    )
    assert not other.duplicate
    assert other.lead_id != reply.lead_id


def test_never_is_blocked_and_defer_waits(
    stub: Stub, tenant: str, rds: redis.Redis, redis_prefix: str
) -> None:
    never = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(
            lead=make_lead(tenant, "n", phone="+13055550001"),
            decision=decision_pb2.Decision(action=decision_pb2.DIAL_ACTION_NEVER),
        )
    )
    assert never.dial_state == dispatcher_pb2.DIAL_STATE_BLOCKED
    later = datetime.now(UTC) + timedelta(hours=10)
    deferred = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(
            lead=make_lead(tenant, "d", phone="+13055550002"),
            decision=decision_pb2.Decision(action=decision_pb2.DIAL_ACTION_DEFER, not_before=to_proto(later)),
        )
    )
    assert deferred.dial_state == dispatcher_pb2.DIAL_STATE_DEFERRED
    assert abs(deferred.dial_at.ToDatetime(tzinfo=UTC) - later) < timedelta(seconds=1)
    dial_msgs = [a for q in ("dial.high",) for a in queued_leads(rds, redis_prefix, q) if a[1][0] == tenant]
    assert dial_msgs == []  # hours away: kept in the database, not in Redis
    assert "dial_blocked" in kinds(stub, tenant, never.lead_id)
    assert "dial_deferred" in kinds(stub, tenant, deferred.lead_id)


def test_repeat_lead_for_same_person_joins_the_pending_call(stub: Stub, tenant: str) -> None:
    first = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(lead=make_lead(tenant, "p-1"), decision=dial_now())
    )
    second = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(lead=make_lead(tenant, "p-2"), decision=dial_now())
    )
    assert not second.duplicate
    assert second.joined_lead_id == first.lead_id
    assert "joined" in kinds(stub, tenant, second.lead_id)
    # The older lead is superseded by the newer one for CRM ordering.
    older = stub.GetLead(dispatcher_pb2.GetLeadRequest(tenant=tenant, lead_id=first.lead_id))
    assert older.superseded_by == second.lead_id


def test_vendor_stamps_order_updates(stub: Stub, tenant: str) -> None:
    now = datetime.now(UTC)
    newer = make_lead(tenant, "s-new", phone="+13055550111")
    newer.vendor_updated_at.CopyFrom(to_proto(now))
    older = make_lead(tenant, "s-old", phone="+13055550111")
    older.vendor_updated_at.CopyFrom(to_proto(now - timedelta(minutes=5)))
    a = stub.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=newer, decision=dial_now()))
    b = stub.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=older, decision=dial_now()))
    # The late-arriving older update must not overwrite the newer one.
    assert (
        stub.GetLead(dispatcher_pb2.GetLeadRequest(tenant=tenant, lead_id=b.lead_id)).superseded_by
        == a.lead_id
    )
    assert stub.GetLead(dispatcher_pb2.GetLeadRequest(tenant=tenant, lead_id=a.lead_id)).superseded_by == ""


def test_one_claim_wins_and_call_status_flows(stub: Stub, tenant: str) -> None:
    lead = stub.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=make_lead(tenant, "c"), decision=dial_now()))
    req = dispatcher_pb2.ClaimDialAttemptRequest(tenant=tenant, lead_id=lead.lead_id, attempt=1)
    first = stub.ClaimDialAttempt(req)
    second = stub.ClaimDialAttempt(req)
    assert first.claimed
    assert not second.claimed
    assert first.lead.contact.phone.e164 == "+13055550123"
    # The callback may outrun the completion report: it is kept and applied then.
    early = stub.RecordCallStatus(
        dispatcher_pb2.RecordCallStatusRequest(
            tenant=tenant, provider_call_id="CA1" + tenant, status="ringing"
        )
    )
    assert early.applied
    stub.CompleteDialAttempt(
        dispatcher_pb2.CompleteDialAttemptRequest(
            tenant=tenant, attempt_id=first.attempt_id, provider_call_id="CA1" + tenant, provider="simulator"
        )
    )
    done = dispatcher_pb2.RecordCallStatusRequest(
        tenant=tenant, provider_call_id="CA1" + tenant, status="busy", duration_seconds=0
    )
    assert stub.RecordCallStatus(done).applied
    assert not stub.RecordCallStatus(done).applied  # idempotent on call id + status
    events = kinds(stub, tenant, lead.lead_id)
    assert events.count("dialed") == 1
    assert events.count("call_status") == 2
    # Busy: a second attempt within the policy (default max 3, backoff 0 here).
    assert "dial_retry_scheduled" in events
    again = stub.ClaimDialAttempt(
        dispatcher_pb2.ClaimDialAttemptRequest(tenant=tenant, lead_id=lead.lead_id, attempt=2)
    )
    assert again.claimed
    assert again.attempt_id != first.attempt_id
    # Another tenant cannot report on this call.
    other = stub.RecordCallStatus(
        dispatcher_pb2.RecordCallStatusRequest(
            tenant="intruder", provider_call_id="CA1" + tenant, status="completed"
        )
    )
    assert other.lead_id == ""


def test_record_event_marks_work_done_once(stub: Stub, tenant: str) -> None:
    lead = stub.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=make_lead(tenant, "e"), decision=dial_now()))
    req = dispatcher_pb2.RecordEventRequest(
        tenant=tenant,
        lead_id=lead.lead_id,
        kind="enriched",
        detail_json=json.dumps({"fit_score": 70}),
        dedupe_key=f"enriched:{lead.lead_id}",
    )
    assert stub.RecordEvent(req).recorded
    assert not stub.RecordEvent(req).recorded
    got = stub.GetLead(dispatcher_pb2.GetLeadRequest(tenant=tenant, lead_id=lead.lead_id))
    assert list(got.work_done) == ["enriched"]
    assert json.loads(got.enrichment_json)["fit_score"] == 70


def test_dead_letters_list_replay_resolve_purge(
    stub: Stub, tenant: str, rds: redis.Redis, redis_prefix: str
) -> None:
    lead = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(lead=make_lead(tenant, "dl"), decision=dial_now())
    )
    dl = stub.RecordDeadLetter(
        dispatcher_pb2.DeadLetter(
            dead_letter_id=uuid.uuid4().hex,
            tenant=tenant,
            queue="crm_sync",
            lead_id=lead.lead_id,
            actor="crm_sync",
            error_class="external",
            error="401 Unauthorized",
            attempts=1,
            job_kind="crm_sync",
            job_attempt=1,
        )
    )
    again = stub.RecordDeadLetter(
        dispatcher_pb2.DeadLetter(dead_letter_id=dl.dead_letter_id, tenant=tenant, queue="crm_sync")
    )
    assert again.dead_letter_id == dl.dead_letter_id
    listed = stub.ListDeadLetters(dispatcher_pb2.ListDeadLettersRequest(tenant=tenant, queue="crm_sync"))
    assert [d.dead_letter_id for d in listed.dead_letters] == [dl.dead_letter_id]
    assert stub.ListDeadLetters(dispatcher_pb2.ListDeadLettersRequest(tenant="other")).dead_letters == []
    with pytest.raises(grpc.RpcError) as err:
        stub.GetDeadLetter(
            dispatcher_pb2.GetDeadLetterRequest(tenant="other", dead_letter_id=dl.dead_letter_id)
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    before = len([a for a in queued_leads(rds, redis_prefix, "crm_sync") if a[1][1] == lead.lead_id])
    replayed = stub.ReplayDeadLetters(
        dispatcher_pb2.ReplayDeadLettersRequest(tenant=tenant, dead_letter_id=dl.dead_letter_id)
    )
    assert replayed.replayed == 1
    after = len([a for a in queued_leads(rds, redis_prefix, "crm_sync") if a[1][1] == lead.lead_id])
    assert after == before + 1
    got = stub.GetDeadLetter(
        dispatcher_pb2.GetDeadLetterRequest(tenant=tenant, dead_letter_id=dl.dead_letter_id)
    )
    assert got.state == "replayed"
    resolved = stub.ResolveDeadLetter(
        dispatcher_pb2.ResolveDeadLetterRequest(
            tenant=tenant, dead_letter_id=dl.dead_letter_id, note="fixed creds"
        )
    )
    assert resolved.state == "resolved"
    assert resolved.note == "fixed creds"
    stub.RecordDeadLetter(
        dispatcher_pb2.DeadLetter(tenant=tenant, queue="enrich", lead_id=lead.lead_id, job_kind="enrich")
    )
    assert (
        stub.PurgeDeadLetters(dispatcher_pb2.PurgeDeadLettersRequest(tenant=tenant, queue="enrich")).purged
        == 1
    )


def test_sweeper_resends_work_redis_lost(
    stub: Stub, tenant: str, rds: redis.Redis, redis_prefix: str
) -> None:
    lead = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(
            lead=make_lead(tenant, "lost", phone="+13055550999"), decision=dial_now()
        )
    )

    def mine(queue: str) -> list[tuple[str, tuple[object, ...]]]:
        return [a for a in queued_leads(rds, redis_prefix, queue) if a[1][:2] == (tenant, lead.lead_id)]

    assert len(mine("enrich")) == 1
    # Redis loses everything (flush): the outbox still knows the work is unfinished.
    for key in rds.scan_iter(match=f"{redis_prefix}dramatiq:*"):
        rds.delete(key)
    assert mine("enrich") == []
    wait_for(
        lambda: len(mine("enrich")) == 1 and len(mine("crm_sync")) == 1 and len(mine("dial.high")) == 1,
        timeout=20,
        what="the sweeper to re-enqueue",
    )


def test_metrics_report_queue_depth(dispatcher_proc: ServiceProcess) -> None:
    import urllib.request

    port = int((dispatcher_proc.workdir / "metrics.port").read_text())
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'leadflow_queue_depth{queue="dial.emergency"}' in body
    assert 'leadflow_queue_oldest_age_seconds{queue="enrich"}' in body
    assert "leadflow_outbox_jobs" in body

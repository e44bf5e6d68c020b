"""The dial path against the Twilio fake, in the real mesh (compliance, dispatcher, gateway and
workers as processes, real PostgreSQL and Redis): a failing dialer is retried, then dead-lettered
and replayed; a call whose callbacks are lost is reconciled by asking Twilio; busy / no-answer
callbacks schedule another attempt within the tenant's max_dial_attempts.

The fake is as unforgiving as Twilio (every create is a new call), so "exactly one call" is
counted on the provider's side: a create that Twilio carried out but answered with a 500, too
late, or not at all is found in the Calls list before any second dial; when the list cannot be
read the lead goes to review; the call's own callbacks find their attempt by our marker."""

from __future__ import annotations

import argparse
import json
import signal
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text

from leadflow.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    dispatcher_pb2,
    dispatcher_pb2_grpc,
    lead_pb2,
    tenants_pb2,
)
from leadflow_cli.commands import deadletters
from leadflow_core.testing import ServiceProcess, python_module, wait_for
from tests.e2e.mesh import Mesh, consented_lead, module_mesh, timeline_kinds
from tests.e2e.scenario import BENCH_TENANT_SPEC, clock_env
from tests.fakes.twilio import FakeCall, TwilioFake

pytestmark = pytest.mark.e2e

ACCOUNT = "AC" + "1" * 32
TOKEN = "twilio-test-token"
FROM = "+12125550100"

FAST = {
    # Long enough that the sweeper never resends a job mid-test: the counts below are exact.
    "LEADFLOW_JOB_LEASE_SECONDS": "30",
    "LEADFLOW_JOB_STUCK_SECONDS": "60",
    "LEADFLOW_CLAIM_STALE_SECONDS": "30",
    "LEADFLOW_RELAY_INTERVAL_SECONDS": "0.2",
    "LEADFLOW_RETRY_BASE_SECONDS": "0.2",
    "LEADFLOW_RETRY_MAX_SECONDS": "1",
    "LEADFLOW_MAX_RETRIES": "6",
    # Kept out of the way: these tests are about retries, not the breaker.
    "LEADFLOW_BREAKER_FAILURE_THRESHOLD": "50",
    "LEADFLOW_PROVIDER_CONFIG_CACHE_SECONDS": "0.2",
    # A call without a final callback for 2 s is reconciled; a call still going is asked again soon.
    "LEADFLOW_CALL_STATUS_TIMEOUT_SECONDS": "2",
    "LEADFLOW_CALL_STATUS_POLL_SECONDS": "0.5",
    # An ambiguous create is looked up 1 s after "dialing"; Twilio's answer is awaited 2 s.
    "LEADFLOW_DIAL_RECONCILE_GRACE_SECONDS": "1",
    "LEADFLOW_PROVIDER_TIMEOUT_SECONDS": "2",
    # A call that ended without a price has it looked up 0.5 s later, then every 0.5 s.
    "LEADFLOW_CALL_PRICE_DELAY_SECONDS": "0.5",
    "LEADFLOW_CALL_PRICE_POLL_SECONDS": "0.5",
    # A call lookup Twilio fails is tried 4 times in all, 0.5 s apart, before review.
    "LEADFLOW_DIAL_LOOKUP_RETRY_SECONDS": "0.5",
}


@pytest.fixture(scope="module")
def mesh(module_database_url: str, redis_url: str, redis_prefix: str) -> Iterator[Mesh]:
    with module_mesh(module_database_url, redis_url, redis_prefix, "dialer", {**clock_env(), **FAST}) as m:
        yield m


@pytest.fixture(scope="module")
def dispatcher(mesh: Mesh) -> dispatcher_pb2_grpc.DispatcherServiceStub:
    return mesh.dispatcher()


@pytest.fixture
def twilio() -> Iterator[TwilioFake]:
    with TwilioFake(ACCOUNT, TOKEN) as fake:
        yield fake


def new_tenant(
    mesh: Mesh,
    twilio: TwilioFake,
    policy: dict[str, object] | None = None,
    budget: dict[str, object] | None = None,
) -> str:
    """A tenant dialing through Twilio (the fake); its `calls` source verifies Twilio's
    signature with the same auth token, as with a real Twilio account."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    spec = {
        **BENCH_TENANT_SPEC,
        "sources": {"api": {}, "calls": {"secretRef": {"name": "calls"}}},
        "policy": dict(policy or {}),
        "budget": budget or BENCH_TENANT_SPEC["budget"],
        "providers": {
            "dialer": {
                "type": "twilio",
                "secretRef": {"name": "twilio", "key": "auth_token"},
                "options": {
                    "base_url": twilio.url,
                    "account_sid": ACCOUNT,
                    "from_number": FROM,
                    # Short retries for this tenant's dial jobs.
                    "max_retries": "3",
                    "retry_base_seconds": "0.2",
                    "retry_max_seconds": "0.5",
                },
            }
        },
    }
    mesh.apply_tenant(name, spec, {"calls": {"auth_token": TOKEN}, "provider:dialer": {"auth_token": TOKEN}})
    return name


def submit(mesh: Mesh, tenant: str, phone: str) -> str:
    """What the gateway does for an emergency lead."""
    lead = consented_lead(tenant, phone, urgency=lead_pb2.URGENCY_EMERGENCY, message="water heater leaking")
    return mesh.submit_as_gateway(lead)


kinds = timeline_kinds


def calls_to(twilio: TwilioFake, phone: str) -> list[FakeCall]:
    return twilio.calls_to(phone)


def active_calls(mesh: Mesh, tenant: str) -> int:
    usage = mesh.tenant_admin().GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant)).usage
    return int(usage.active_calls)


def accepted(answer: int | None) -> bool:
    """The gateway took the status callback (any 2xx, as Twilio counts it)."""
    return answer is not None and 200 <= answer < 300


def dial_posts(twilio: TwilioFake) -> int:
    return len(twilio.requests_to("/Calls.json", "POST"))


def spend_today(mesh: Mesh, tenant: str) -> Decimal:
    usage = mesh.tenant_admin().GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant)).usage
    return Decimal(usage.spend_today_usd)


def job_states(database_url: str, lead_id: str, kind: str) -> list[str]:
    """The outbox rows of one kind of job for the lead: "done" once nothing is left to do."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT state FROM dispatcher_jobs WHERE lead_id = :lead AND kind = :kind"),
                {"lead": lead_id, "kind": kind},
            )
            return [str(r[0]) for r in rows]
    finally:
        engine.dispose()


def test_twilio_429_and_500_are_retried_then_the_lead_is_dialed_once(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, twilio: TwilioFake
) -> None:
    tenant = new_tenant(mesh, twilio)
    twilio.fail(times=1, status=429, headers={"Retry-After": "1"}, path_contains="/Calls.json", method="POST")
    twilio.fail(times=2, status=500, path_contains="/Calls.json", method="POST")
    phone = "+12125551001"
    lead_id = submit(mesh, tenant, phone)
    wait_for(lambda: "dialed" in kinds(dispatcher, tenant, lead_id), timeout=60, what="the dial")
    assert dial_posts(twilio) == 4  # 429, 500, 500, then the call
    assert len(calls_to(twilio, phone)) == 1
    seen = kinds(dispatcher, tenant, lead_id)
    # A 429 is a refusal; each 500 may have placed a call, so the next try first looked it up
    # in Twilio's Calls list, found none, and only then dialed again.
    assert seen.count("dial_unsure") == 2, seen
    assert seen.count("dial_reconciling") == 2, seen
    assert len(twilio.requests_to("/Calls.json", "GET")) >= 4  # two list reads per lookup
    assert seen.count("dial_failed") == 3, seen
    assert seen.count("dialed") == 1, seen
    assert "dead_lettered" not in seen
    letters = dispatcher.ListDeadLetters(dispatcher_pb2.ListDeadLettersRequest(tenant=tenant)).dead_letters
    assert list(letters) == []
    # The three failed tries released their reservations; the placed call holds one slot.
    wait_for(lambda: active_calls(mesh, tenant) == 1, timeout=30, what="one active call")
    (call,) = calls_to(twilio, phone)
    assert accepted(twilio.progress(call.sid, "completed", duration=30))
    wait_for(lambda: active_calls(mesh, tenant) == 0, timeout=30, what="the slot freed")


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="leadflow")
    deadletters.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_twilio_down_dead_letters_then_cli_replay_dials_once(
    mesh: Mesh,
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub,
    twilio: TwilioFake,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant = new_tenant(mesh, twilio)
    twilio.fail(times=1000, status=503, path_contains="/Calls.json", method="POST")
    phone = "+12125551002"
    lead_id = submit(mesh, tenant, phone)

    def dead() -> list[dispatcher_pb2.DeadLetter]:
        reply = dispatcher.ListDeadLetters(dispatcher_pb2.ListDeadLettersRequest(tenant=tenant))
        return list(reply.dead_letters)

    (letter,) = wait_for(dead, timeout=60, what="a dead letter")
    assert letter.lead_id == lead_id
    assert letter.queue == "dial.emergency"
    assert letter.job_kind == "dial"
    assert letter.error_class == "temporary"
    assert letter.attempts == 4  # the first try and the tenant's max_retries of 3
    assert dial_posts(twilio) == 4
    assert calls_to(twilio, phone) == []
    seen = kinds(dispatcher, tenant, lead_id)
    assert "dead_lettered" in seen, seen
    assert "dialed" not in seen
    # Each 503 may have placed a call: every earlier try was looked up (none found) and released
    # its reservation; the last one's is held until its own lookup, which the replay runs.
    assert seen.count("dial_unsure") == 4, seen
    wait_for(lambda: active_calls(mesh, tenant) == 1, timeout=30, what="the unproven try's slot held")

    # Twilio is back; replay through the CLI.
    twilio.clear_faults()
    monkeypatch.setenv("LEADFLOW_DISPATCHER_ADDR", mesh.processes["dispatcher"].addr)
    assert run_cli(["deadletters", "replay", tenant, letter.dead_letter_id]) == 0
    assert "replayed 1" in capsys.readouterr().out
    wait_for(lambda: "dialed" in kinds(dispatcher, tenant, lead_id), timeout=60, what="the replayed dial")
    assert dead() == []
    (call,) = calls_to(twilio, phone)
    assert accepted(twilio.progress(call.sid, "completed", duration=20))
    wait_for(lambda: active_calls(mesh, tenant) == 0, timeout=30, what="the slot freed")
    seen = kinds(dispatcher, tenant, lead_id)
    assert seen.count("dialed") == 1, seen
    assert len(calls_to(twilio, phone)) == 1
    assert dial_posts(twilio) == 5


def test_call_whose_callbacks_are_lost_is_reconciled_with_twilio(
    mesh: Mesh,
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub,
    twilio: TwilioFake,
    module_database_url: str,
) -> None:
    tenant = new_tenant(mesh, twilio)
    phone = "+12125551003"
    lead_id = submit(mesh, tenant, phone)
    wait_for(lambda: "dialed" in kinds(dispatcher, tenant, lead_id), timeout=60, what="the dial")
    (call,) = calls_to(twilio, phone)
    assert active_calls(mesh, tenant) == 1
    # The call is still going when reconciliation first asks; then it ends, callback lost.
    twilio.progress(call.sid, "in-progress", notify=False)
    wait_for(lambda: twilio.requests_to(f"/Calls/{call.sid}.json", "GET"), timeout=30, what="a status fetch")
    assert "call_status" not in kinds(dispatcher, tenant, lead_id)
    twilio.progress(call.sid, "completed", duration=75, notify=False)
    wait_for(
        lambda: "call_status" in kinds(dispatcher, tenant, lead_id), timeout=30, what="the reconciled status"
    )
    wait_for(lambda: active_calls(mesh, tenant) == 0, timeout=30, what="the slot freed")
    events = dispatcher.GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=tenant, lead_id=lead_id)).events
    statuses = [e.detail_json for e in events if e.kind == "call_status"]
    assert len(statuses) == 1, statuses
    assert '"completed"' in statuses[0]
    assert '"duration_seconds": 75' in statuses[0]
    assert "dial_retry_scheduled" not in [e.kind for e in events]
    assert call.callbacks == []  # nothing was delivered: the status came from the fetch
    lead = dispatcher.GetLead(dispatcher_pb2.GetLeadRequest(tenant=tenant, lead_id=lead_id))
    assert lead.lead.lead_id == lead_id
    # The lookup is finished with the status it found: never sent again to ask once more.
    assert job_states(module_database_url, lead_id, "call_status") == ["done"]


def test_a_call_ended_without_a_price_settles_at_twilios_price_once_twilio_has_it(
    mesh: Mesh,
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub,
    twilio: TwilioFake,
    module_database_url: str,
) -> None:
    # Twilio's status callbacks carry no price; its Calls resource has one a while after the end.
    twilio.price_after_seconds = 2.0
    card = {"defaultPerMinuteUsd": "0.1000", "estimateMinutes": 2}
    tenant = new_tenant(mesh, twilio, budget={"dailyUsd": "100.00", "rateCard": card})
    phone = "+12125551009"
    lead_id = submit(mesh, tenant, phone)
    wait_for(lambda: "dialed" in kinds(dispatcher, tenant, lead_id), timeout=60, what="the dial")
    (call,) = calls_to(twilio, phone)
    assert spend_today(mesh, tenant) == Decimal("0.20")  # the rate card's estimate, held
    assert all(accepted(a) for a in twilio.play(call.sid, "completed", duration=75))
    # The final callback again, before the price exists: it neither prices nor ends the lookup.
    assert accepted(twilio.redeliver(call.sid))
    wait_for(lambda: "call_priced" in kinds(dispatcher, tenant, lead_id), timeout=30, what="the price")
    # Two minutes at Twilio's 0.014 (0.028, shown in cents) replace the 0.20 estimate.
    wait_for(lambda: spend_today(mesh, tenant) == Decimal("0.03"), timeout=30, what="spend at the price")
    # Looked up before Twilio had priced it (null: looked again), then once more with the price.
    assert len(twilio.requests_to(f"/Calls/{call.sid}.json", "GET")) >= 2
    assert job_states(module_database_url, lead_id, "call_price") == ["done"]
    events = dispatcher.GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=tenant, lead_id=lead_id)).events
    priced = [json.loads(e.detail_json) for e in events if e.kind == "call_priced"]
    assert [p["price_usd"] for p in priced] == ["0.02800"]  # the client drops the sign
    assert len(calls_to(twilio, phone)) == 1


def test_busy_then_no_answer_retries_within_max_dial_attempts(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, twilio: TwilioFake
) -> None:
    # retryBackoffSeconds 0 would read as "unset" (600 s) in the dispatcher: proto3 has no presence.
    tenant = new_tenant(mesh, twilio, {"maxDialAttempts": 2, "retryBackoffSeconds": 1})
    phone = "+12125551004"
    lead_id = submit(mesh, tenant, phone)
    (first,) = wait_for(lambda: calls_to(twilio, phone), timeout=60, what="the first call")
    assert accepted(twilio.progress(first.sid, "ringing"))
    assert accepted(twilio.progress(first.sid, "busy"))
    second = wait_for(
        lambda: [c for c in calls_to(twilio, phone) if c.sid != first.sid], timeout=60, what="a second call"
    )[0]
    assert second.marker != first.marker  # a new attempt, not a repeat of the first
    assert accepted(twilio.progress(second.sid, "no-answer"))
    wait_for(lambda: active_calls(mesh, tenant) == 0, timeout=30, what="both slots freed")
    wait_for(
        lambda: kinds(dispatcher, tenant, lead_id).count("call_status") == 3,
        timeout=30,
        what="three call statuses",
    )
    seen = kinds(dispatcher, tenant, lead_id)
    assert seen.count("dialed") == 2, seen
    # busy scheduled attempt 2; no-answer on attempt 2 is the tenant's last.
    assert seen.count("dial_retry_scheduled") == 1, seen
    assert len(calls_to(twilio, phone)) == 2


def dialed_call_ids(
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, tenant: str, lead_id: str
) -> list[str]:
    events = dispatcher.GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=tenant, lead_id=lead_id)).events
    return [json.loads(e.detail_json)["call_id"] for e in events if e.kind == "dialed"]


def statuses_applied(
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, tenant: str, lead_id: str
) -> list[str]:
    events = dispatcher.GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=tenant, lead_id=lead_id)).events
    return [json.loads(e.detail_json)["status"] for e in events if e.kind == "call_status"]


@pytest.mark.parametrize(
    ("mode", "phone"), [("500", "+12125551011"), ("timeout", "+12125551012"), ("drop", "+12125551013")]
)
def test_a_call_created_behind_a_failed_answer_is_found_never_placed_twice(
    mesh: Mesh,
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub,
    twilio: TwilioFake,
    mode: str,
    phone: str,
) -> None:
    tenant = new_tenant(mesh, twilio)
    twilio.fail_after_create(mode)  # Twilio creates the call, then the answer is lost
    lead_id = submit(mesh, tenant, phone)
    wait_for(lambda: "dialed" in kinds(dispatcher, tenant, lead_id), timeout=90, what="the reconciled dial")
    (call,) = calls_to(twilio, phone)
    assert dialed_call_ids(dispatcher, tenant, lead_id) == [call.sid]  # the first call's sid
    seen = kinds(dispatcher, tenant, lead_id)
    assert "dial_unsure" in seen, seen
    assert "dial_reconciling" in seen, seen
    # The call's callbacks are its attempt's: applied, the slot and the reservation settled.
    assert all(accepted(a) for a in twilio.play(call.sid, "completed", duration=30))
    wait_for(
        lambda: "completed" in statuses_applied(dispatcher, tenant, lead_id), timeout=30, what="the callbacks"
    )
    wait_for(lambda: active_calls(mesh, tenant) == 0, timeout=30, what="the slot freed")
    assert dial_posts(twilio) == 1
    assert len(calls_to(twilio, phone)) == 1


def test_a_lookup_twilio_fails_for_a_while_is_tried_again_not_sent_to_review(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, twilio: TwilioFake
) -> None:
    tenant = new_tenant(mesh, twilio)
    phone = "+12125551016"
    twilio.fail_after_create("500")  # the call is created, the answer is a 500
    # Twilio's Calls list fails the first two lookups too (as during the same outage).
    twilio.fail(times=2, status=503, path_contains="/Calls.json", method="GET")
    lead_id = submit(mesh, tenant, phone)
    wait_for(lambda: "dialed" in kinds(dispatcher, tenant, lead_id), timeout=90, what="the reconciled dial")
    (call,) = calls_to(twilio, phone)
    assert dialed_call_ids(dispatcher, tenant, lead_id) == [call.sid]
    seen = kinds(dispatcher, tenant, lead_id)
    assert "dial_review" not in seen, seen
    # Three lookups: two failed (each read of the list failed first), the third found the call.
    assert seen.count("dial_reconciling") == 3, seen
    assert dial_posts(twilio) == 1
    assert len(calls_to(twilio, phone)) == 1


def test_unprovable_call_goes_to_review_and_its_marked_callbacks_are_applied(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, twilio: TwilioFake
) -> None:
    tenant = new_tenant(mesh, twilio)
    phone = "+12125551014"
    twilio.fail_after_create("drop")
    twilio.fail(times=1000, status=500, path_contains="/Calls.json", method="GET")  # no lookup possible
    lead_id = submit(mesh, tenant, phone)
    wait_for(lambda: "dial_review" in kinds(dispatcher, tenant, lead_id), timeout=90, what="the review")
    admin = admin_pb2_grpc.AdminServiceStub(mesh._channel("dispatcher"))
    (review,) = admin.ListReviews(admin_pb2.ListReviewsRequest(tenant=tenant)).items
    assert review.lead_id == lead_id
    assert list(review.reasons) == ["dial.call_unproven"]
    lead = dispatcher.GetLead(dispatcher_pb2.GetLeadRequest(tenant=tenant, lead_id=lead_id))
    assert lead.dial_state == dispatcher_pb2.DIAL_STATE_BLOCKED
    (call,) = calls_to(twilio, phone)
    assert dial_posts(twilio) == 1  # never a second dial
    assert "dialed" not in kinds(dispatcher, tenant, lead_id)

    # The call goes on at Twilio; its callbacks carry our marker: the product learns the sid,
    # applies every status, settles the call and closes the question.
    assert all(accepted(a) for a in twilio.play(call.sid, "completed", duration=20))
    wait_for(
        lambda: "completed" in statuses_applied(dispatcher, tenant, lead_id), timeout=30, what="the callbacks"
    )
    assert dialed_call_ids(dispatcher, tenant, lead_id) == [call.sid]
    assert statuses_applied(dispatcher, tenant, lead_id) == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    wait_for(lambda: active_calls(mesh, tenant) == 0, timeout=30, what="the slot freed")
    assert admin.ListReviews(admin_pb2.ListReviewsRequest(tenant=tenant)).items == []
    assert dial_posts(twilio) == 1
    assert len(calls_to(twilio, phone)) == 1


def test_worker_killed_right_after_the_create_never_dials_twice(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, twilio: TwilioFake
) -> None:
    """Last in this module: it replaces the mesh's workers. Twilio creates the call and holds
    its answer; the worker waiting for it is killed. The attempt was recorded "dialing" before
    the request, so whoever picks the job up again looks the call up instead of dialing."""
    tenant = new_tenant(mesh, twilio)
    phone = "+12125551015"
    twilio.fail_after_create("timeout")
    lead_id = submit(mesh, tenant, phone)
    (call,) = wait_for(lambda: calls_to(twilio, phone), timeout=60, what="the create")
    workers = mesh.processes["workers"]
    workers.kill(signal.SIGKILL)
    replacement = ServiceProcess(
        "workers2", python_module("leadflow_enrichment"), dict(workers.env), workers.workdir
    )
    mesh.processes["workers2"] = replacement.start(wait_port=False)
    # The job comes back when the dispatcher's sweeper finds it stuck; the claim is stale by then.
    wait_for(lambda: "dialed" in kinds(dispatcher, tenant, lead_id), timeout=240, what="the reconciled dial")
    assert dialed_call_ids(dispatcher, tenant, lead_id) == [call.sid]
    assert "dial_reconciling" in kinds(dispatcher, tenant, lead_id)
    assert all(accepted(a) for a in twilio.play(call.sid, "completed", duration=10))
    wait_for(lambda: active_calls(mesh, tenant) == 0, timeout=30, what="the slot freed")
    assert dial_posts(twilio) == 1
    assert len(calls_to(twilio, phone)) == 1

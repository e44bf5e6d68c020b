"""The dial path against the Twilio fake, in the real mesh (compliance, dispatcher, gateway and
workers as processes, real PostgreSQL and Redis): a failing dialer is retried, then dead-lettered
and replayed; a call whose callbacks are lost is reconciled by asking Twilio; busy / no-answer
callbacks schedule another attempt within the tenant's max_dial_attempts."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterator

import pytest

from leadflow.v1 import dispatcher_pb2, dispatcher_pb2_grpc, lead_pb2, tenants_pb2
from leadflow_cli.commands import deadletters
from leadflow_core.testing import wait_for
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
}


@pytest.fixture(scope="module")
def mesh(database_url: str, redis_url: str, redis_prefix: str) -> Iterator[Mesh]:
    with module_mesh(database_url, redis_url, redis_prefix, "dialer", {**clock_env(), **FAST}) as m:
        yield m


@pytest.fixture(scope="module")
def dispatcher(mesh: Mesh) -> dispatcher_pb2_grpc.DispatcherServiceStub:
    return mesh.dispatcher()


@pytest.fixture
def twilio() -> Iterator[TwilioFake]:
    with TwilioFake(ACCOUNT, TOKEN) as fake:
        yield fake


def new_tenant(mesh: Mesh, twilio: TwilioFake, policy: dict[str, object] | None = None) -> str:
    """A tenant dialing through Twilio (the fake); its `calls` source verifies Twilio's
    signature with the same auth token, as with a real Twilio account."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    spec = {
        **BENCH_TENANT_SPEC,
        "sources": {"api": {}, "calls": {"secretRef": {"name": "calls"}}},
        "policy": dict(policy or {}),
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
    return [c for c in list(twilio.calls.values()) if c.to == phone]


def active_calls(mesh: Mesh, tenant: str) -> int:
    usage = mesh.tenant_admin().GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant)).usage
    return int(usage.active_calls)


def accepted(answer: int | None) -> bool:
    """The gateway took the status callback (any 2xx, as Twilio counts it)."""
    return answer is not None and 200 <= answer < 300


def dial_posts(twilio: TwilioFake) -> int:
    return len(twilio.requests_to("/Calls.json", "POST"))


def test_twilio_429_and_500_are_retried_then_the_lead_is_dialed_once(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, twilio: TwilioFake
) -> None:
    tenant = new_tenant(mesh, twilio)
    twilio.fail(times=1, status=429, headers={"Retry-After": "1"}, path_contains="/Calls.json")
    twilio.fail(times=2, status=500, path_contains="/Calls.json")
    phone = "+12125551001"
    lead_id = submit(mesh, tenant, phone)
    wait_for(lambda: "dialed" in kinds(dispatcher, tenant, lead_id), timeout=60, what="the dial")
    assert dial_posts(twilio) == 4  # 429, 500, 500, then the call
    assert len(calls_to(twilio, phone)) == 1
    seen = kinds(dispatcher, tenant, lead_id)
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
    twilio.fail(times=1000, status=503, path_contains="/Calls.json")
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
    # Every failed try released its reservation.
    wait_for(lambda: active_calls(mesh, tenant) == 0, timeout=30, what="no slot held")

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
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, twilio: TwilioFake
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
    assert second.idempotency_key != first.idempotency_key  # a new attempt, not a repeat of the first
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

"""AdminService against the whole mesh: the counts it reports are the ones the test put in, and
its actions change what the pipeline does (a paused queue holds dials; intake still answers 202)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from leadflow.v1 import admin_pb2, admin_pb2_grpc, dispatcher_pb2
from leadflow_core.db import normalise_url
from leadflow_core.testing import wait_for
from tests.e2e.mesh import Mesh, running_mesh
from tests.e2e.scenario import clock_env, lead_body, tenant_secrets, tenant_spec

pytestmark = pytest.mark.e2e

ACME = "adm-acme"
BETA = "adm-beta"
SLOW = "adm-slow"
URGENCIES = ("emergency", "high", "medium", "low")
ACTOR: tuple[tuple[str, str | bytes], ...] = (("x-leadflow-actor", "ops-alice"),)


@pytest.fixture(scope="module")
def mesh(database_url: str, redis_url: str, redis_prefix: str) -> Iterator[Mesh]:
    with (
        tempfile.TemporaryDirectory(prefix="leadflow-admin-") as tmp,
        running_mesh(
            database_url,
            redis_url,
            redis_prefix + "adm:",
            Path(tmp),
            # Short leases: a job whose message a worker skipped is found gone within seconds.
            {**clock_env(), "LEADFLOW_JOB_LEASE_SECONDS": "3"},
        ) as m,
    ):
        m.apply_tenant(ACME, tenant_spec(), tenant_secrets("acme-form", "acme-token"))
        delayed = tenant_spec(policy={"defaultRegion": "US", "dialDelaySeconds": dict.fromkeys(URGENCIES, 4)})
        m.apply_tenant(SLOW, delayed, tenant_secrets("slow-form", "slow-token"))
        m.apply_tenant(BETA, tenant_spec(), tenant_secrets("beta-form", "beta-token"))
        yield m


@pytest.fixture(scope="module")
def admin(mesh: Mesh) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(mesh._channel("dispatcher"))


@pytest.fixture(scope="module")
def db(mesh: Mesh) -> Iterator[Engine]:
    engine = create_engine(normalise_url(mesh.database_url))
    yield engine
    engine.dispose()


def post_api(mesh: Mesh, tenant: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(
        f"{mesh.gateway_url}/v1/leads",
        json=body,
        headers={"Authorization": f"Bearer {mesh.api_keys[tenant]}"},
        timeout=30,
    )


def post_form(mesh: Mesh, tenant: str, key: str, i: int, tag: str) -> httpx.Response:
    body = lead_body(i, tag=tag)
    body["form_key"] = key
    return httpx.post(f"{mesh.gateway_url}/v1/webhooks/{tenant}/form", json=body, timeout=30)


def simulated_calls(db: Engine, tenant: str, lead_id: str) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text("SELECT COUNT(*) FROM enrichment_simulated_calls WHERE tenant = :t AND lead_id = :l"),
                {"t": tenant, "l": lead_id},
            ).scalar_one()
        )


def kinds(mesh: Mesh, tenant: str, lead_id: str) -> list[str]:
    reply = mesh.dispatcher().GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=tenant, lead_id=lead_id))
    return [e.kind for e in reply.events]


def queue(admin: admin_pb2_grpc.AdminServiceStub, name: str) -> admin_pb2.QueueStatus:
    reply = admin.GetQueueStatus(admin_pb2.GetQueueStatusRequest(queue=name))
    assert [q.queue for q in reply.queues] == [name]
    return reply.queues[0]


def test_paused_dial_queues_hold_dials_while_intake_answers_202(
    mesh: Mesh, admin: admin_pb2_grpc.AdminServiceStub, db: Engine
) -> None:
    paused = admin.PauseQueues(
        admin_pb2.PauseQueuesRequest(queue="dial", reason="carrier outage"), metadata=ACTOR
    )
    assert set(paused.paused) == {"dial.emergency", "dial.high", "dial.medium", "dial.low"}
    resp = post_api(mesh, ACME, lead_body(0, tag="paused"))
    assert resp.status_code == 202, resp.text
    lead_id = resp.json()["lead_id"]
    # Workers run (the lead is enriched and synced) but its dial waits in the outbox.
    wait_for(lambda: {"enriched", "synced"} <= set(kinds(mesh, ACME, lead_id)), timeout=60, what="enriched")
    dials = [q for q in admin.GetQueueStatus(admin_pb2.GetQueueStatusRequest(queue="")).queues if q.priority]
    assert all(q.paused and q.paused_reason == "carrier outage" for q in dials)
    assert sum(q.outbox_pending for q in dials) >= 1
    assert simulated_calls(db, ACME, lead_id) == 0
    assert "dialing" not in kinds(mesh, ACME, lead_id)

    admin.ResumeQueues(admin_pb2.ResumeQueuesRequest(queue="dial", reason="carrier back"), metadata=ACTOR)
    wait_for(lambda: simulated_calls(db, ACME, lead_id) == 1, timeout=90, what="the held dial after resume")
    assert not queue(admin, "dial.medium").paused

    entries = admin.ListAdminAudit(admin_pb2.ListAdminAuditRequest(limit=10)).entries
    actions = [(e.action, e.reason) for e in entries]
    assert ("queues.pause", "carrier outage") in actions
    assert ("queues.resume", "carrier back") in actions
    assert all(e.actor.startswith("ops-alice") for e in entries)

    # Calls placed so far are in the call statistics (the simulator completes them).
    def completed() -> list[admin_pb2.CallStat]:
        stats = admin.GetCallStats(admin_pb2.GetCallStatsRequest(tenant=ACME)).stats
        return [s for s in stats if s.outcome == "completed"]

    wait_for(lambda: completed() or None, timeout=60, what="a completed call in the statistics")
    stat = completed()[0]
    assert stat.tenant == ACME
    assert stat.placed >= 1
    assert stat.total_duration_seconds >= stat.answered


def test_a_dial_already_in_redis_is_held_by_a_pause(
    mesh: Mesh, admin: admin_pb2_grpc.AdminServiceStub, db: Engine
) -> None:
    # The dial is enqueued with a 4 s delay before the pause: the worker takes it, and skips it.
    resp = post_api(mesh, SLOW, lead_body(60, tag=uuid.uuid4().hex[:6]))
    assert resp.status_code == 202, resp.text
    lead_id = resp.json()["lead_id"]
    admin.PauseQueues(admin_pb2.PauseQueuesRequest(queue="dial", reason="hold"), metadata=ACTOR)
    wait_for(
        lambda: "job_skipped_queue_paused" in mesh.processes["workers"].logs(), timeout=60, what="the skip"
    )
    wait_for(lambda: {"enriched", "synced"} <= set(kinds(mesh, SLOW, lead_id)), timeout=60, what="enriched")

    # The job goes back to the outbox (its message is gone) and waits there while paused.
    def held() -> bool:
        queues = admin.GetQueueStatus(admin_pb2.GetQueueStatusRequest()).queues
        return sum(int(q.outbox_pending) for q in queues if q.priority) >= 1

    wait_for(held, timeout=60, what="the job back in the outbox")
    assert simulated_calls(db, SLOW, lead_id) == 0
    admin.ResumeQueues(admin_pb2.ResumeQueuesRequest(queue="dial", reason="go"), metadata=ACTOR)
    wait_for(lambda: simulated_calls(db, SLOW, lead_id) == 1, timeout=90, what="the dial after resume")


def test_lead_and_error_statistics_count_what_was_put_in(
    mesh: Mesh, admin: admin_pb2_grpc.AdminServiceStub
) -> None:
    tag = uuid.uuid4().hex[:6]
    # beta: 3 API leads (one posted twice), 2 form leads, 1 API lead without consent (blocked).
    for i in range(3):
        assert post_api(mesh, BETA, lead_body(10 + i, tag=tag)).status_code == 202
    assert post_api(mesh, BETA, lead_body(10, tag=tag)).status_code == 200
    for i in range(2):
        assert post_form(mesh, BETA, "beta-form", 20 + i, tag).status_code == 202
    blocked = post_api(mesh, BETA, lead_body(30, tag=tag, consent=False))
    assert blocked.status_code == 202
    lead_id = blocked.json()["lead_id"]

    stats = {s.source: s for s in admin.GetLeadStats(admin_pb2.GetLeadStatsRequest(tenant=BETA)).stats}
    assert stats["api"].stored == 4
    assert stats["api"].duplicates == 1
    assert stats["api"].received == 5
    assert stats["form"].stored == 2
    assert stats["form"].duplicates == 0
    assert stats["api"].blocked == 1
    assert sum(stats["api"].blocked_by_reason.values()) >= 1
    assert all(s.tenant == BETA for s in stats.values())

    d = mesh.dispatcher()
    for error_class, q, n in (("validation", "dial.high", 2), ("transient", "crm_sync", 1)):
        for _ in range(n):
            d.RecordDeadLetter(
                dispatcher_pb2.DeadLetter(tenant=BETA, queue=q, lead_id=lead_id, error_class=error_class)
            )
    errors = admin.GetErrorStats(admin_pb2.GetErrorStatsRequest(tenant=BETA, window_seconds=600))
    by = {(e.error_class, e.queue, e.source): e.count for e in errors.stats}
    assert by == {("validation", "dial.high", "api"): 2, ("transient", "crm_sync", "api"): 1}
    assert errors.total == 3

    # Resolving one needs a reason, and is audited.
    dl = d.ListDeadLetters(dispatcher_pb2.ListDeadLettersRequest(tenant=BETA, queue="crm_sync")).dead_letters[
        0
    ]
    with pytest.raises(grpc.RpcError) as err:
        admin.ResolveError(admin_pb2.ResolveErrorRequest(tenant=BETA, dead_letter_id=dl.dead_letter_id))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    done = admin.ResolveError(
        admin_pb2.ResolveErrorRequest(tenant=BETA, dead_letter_id=dl.dead_letter_id, reason="CRM fixed"),
        metadata=ACTOR,
    )
    assert done.state == "resolved"
    errors = admin.GetErrorStats(admin_pb2.GetErrorStatsRequest(tenant=BETA, window_seconds=600))
    assert sum(e.open for e in errors.stats) == 2


def test_review_queue_approve_dials_and_reject_never_does(
    mesh: Mesh, admin: admin_pb2_grpc.AdminServiceStub, db: Engine
) -> None:
    # A toll-free number names no state or time zone: compliance asks a person to review.
    ids = []
    for i in range(2):
        resp = post_api(mesh, ACME, lead_body(40 + i, tag=uuid.uuid4().hex[:6], phone=f"+1800555014{i}"))
        assert resp.status_code == 202, resp.text
        assert resp.json()["dial"]["state"] == "blocked"
        ids.append(resp.json()["lead_id"])
    listed = admin.ListReviews(admin_pb2.ListReviewsRequest(tenant=ACME)).items
    assert {i.lead_id for i in listed} >= set(ids)
    assert all(i.reasons == ["location.unknown"] for i in listed if i.lead_id in ids)

    approved = admin.DecideReview(
        admin_pb2.DecideReviewRequest(
            tenant=ACME, lead_id=ids[0], approve=True, reason="caller said NYC", state="NY"
        ),
        metadata=ACTOR,
    )
    assert approved.state == "approved"
    assert approved.decided_by.startswith("ops-alice")
    rejected = admin.DecideReview(
        admin_pb2.DecideReviewRequest(tenant=ACME, lead_id=ids[1], approve=False, reason="wrong number"),
        metadata=ACTOR,
    )
    assert rejected.state == "rejected"
    with pytest.raises(grpc.RpcError) as err:
        admin.DecideReview(
            admin_pb2.DecideReviewRequest(tenant=ACME, lead_id=ids[1], approve=True, reason="again"),
            metadata=ACTOR,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # The approved lead goes through the normal final gate (the reviewer's state reaches
    # compliance, which then decides on calling hours); the rejected one never gets there.
    wait_for(lambda: "dialing" in kinds(mesh, ACME, ids[0]), timeout=90, what="the approved lead's dial")
    wait_for(
        lambda: {"dialed", "dial_deferred"} & set(kinds(mesh, ACME, ids[0])), timeout=60, what="the gate"
    )
    gate = mesh.dispatcher().GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=ACME, lead_id=ids[0]))
    assert not any("location.unknown" in e.detail_json for e in gate.events if e.kind == "dial_deferred")
    assert "review_approved" in kinds(mesh, ACME, ids[0])
    assert "review_rejected" in kinds(mesh, ACME, ids[1])
    assert "dialing" not in kinds(mesh, ACME, ids[1])
    assert simulated_calls(db, ACME, ids[1]) == 0
    open_ids = {i.lead_id for i in admin.ListReviews(admin_pb2.ListReviewsRequest(tenant=ACME)).items}
    assert not open_ids & set(ids)


def test_tenant_limits_pause_emergency_and_health(mesh: Mesh, admin: admin_pb2_grpc.AdminServiceStub) -> None:
    limits = {t.tenant: t for t in admin.GetTenantLimits(admin_pb2.GetTenantLimitsRequest()).tenants}
    assert {ACME, BETA} <= set(limits)
    assert limits[BETA].calls_per_minute == 600
    assert limits[BETA].daily_budget_usd == "1000.00"
    assert not limits[BETA].paused

    admin.SetTenantCallsPaused(
        admin_pb2.SetTenantCallsPausedRequest(tenant=BETA, paused=True, reason="billing dispute"),
        metadata=ACTOR,
    )
    one = admin.GetTenantLimits(admin_pb2.GetTenantLimitsRequest(tenant=BETA)).tenants
    assert [t.paused for t in one] == [True]
    admin.SetTenantCallsPaused(
        admin_pb2.SetTenantCallsPausedRequest(tenant=BETA, paused=False, reason="settled"), metadata=ACTOR
    )
    assert not admin.GetTenantLimits(admin_pb2.GetTenantLimitsRequest(tenant=BETA)).tenants[0].paused

    with pytest.raises(grpc.RpcError) as err:
        admin.SetEmergencyMode(admin_pb2.SetEmergencyModeRequest(tenant=BETA, on=True, reason="x"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    on = admin.SetEmergencyMode(
        admin_pb2.SetEmergencyModeRequest(tenant=BETA, on=True, duration_seconds=60, reason="complaint"),
        metadata=ACTOR,
    )
    assert on.until.seconds > 0
    admin.SetEmergencyMode(
        admin_pb2.SetEmergencyModeRequest(tenant=BETA, on=False, reason="checked"), metadata=ACTOR
    )
    actions = [e.action for e in admin.ListAdminAudit(admin_pb2.ListAdminAuditRequest(tenant=BETA)).entries]
    assert actions[:4] == ["emergency.off", "emergency.on", "tenant.resume", "tenant.pause"]

    health = {c.name: c for c in admin.GetSystemHealth(admin_pb2.GetSystemHealthRequest()).components}
    for name in ("database", "redis", "dispatcher", "compliance", "workers"):
        assert health[name].healthy, (name, health[name].detail)
    assert health["redis"].version
    assert health["database"].version
    # This mesh's dispatcher is not told where the gateway is: reported, not hidden.
    assert set(health) == {"database", "redis", "dispatcher", "compliance", "gateway", "workers"}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from leadflow_cli.__main__ import main

    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().out


def test_cli_prints_what_the_service_answers(
    mesh: Mesh,
    admin: admin_pb2_grpc.AdminServiceStub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from google.protobuf.json_format import MessageToDict

    monkeypatch.setenv("LEADFLOW_DISPATCHER_ADDR", mesh.processes["dispatcher"].addr)
    monkeypatch.setenv("LEADFLOW_ACTOR", "cli-bob")
    tag = uuid.uuid4().hex[:6]
    lead_id = post_api(mesh, BETA, lead_body(50, tag=tag, phone="+12125550177")).json()["lead_id"]

    code, out = run_cli(["leads", "stats", "--tenant", BETA, "--json"], capsys)
    assert code == 0
    want = MessageToDict(
        admin.GetLeadStats(admin_pb2.GetLeadStatsRequest(tenant=BETA)),
        always_print_fields_with_no_presence=True,
    )
    assert json.loads(out)["stats"] == want["stats"]
    code, out = run_cli(["leads", "stats", "--tenant", BETA], capsys)
    api = next(s for s in want["stats"] if s["source"] == "api")
    row = next(line.split() for line in out.splitlines() if line.startswith(f"{BETA} ") and " api " in line)
    assert row[2:4] == [str(api["received"]), str(api["stored"])]

    code, out = run_cli(["leads", "search", BETA, "--phone", "+12125550177"], capsys)
    assert lead_id in out
    assert "+12125550177" not in out  # masked
    code, out = run_cli(["leads", "search", BETA, "--phone", "+12125550177", "--json"], capsys)
    assert [x["leadId"] for x in json.loads(out)["leads"]] == [lead_id]

    code, out = run_cli(["queues", "pause", "enrich", "--reason", "cli test"], capsys)
    assert code == 0
    assert "enrich" in out
    code, out = run_cli(["queues", "--json"], capsys)
    listed = {q["queue"]: q for q in json.loads(out)["queues"]}
    assert listed["enrich"]["paused"] is True
    assert listed["crm_sync"]["paused"] is False
    code, out = run_cli(["queues"], capsys)
    enrich = next(line for line in out.splitlines() if line.startswith("enrich "))
    assert "paused: cli test" in enrich
    run_cli(["queues", "resume", "enrich", "--reason", "cli test done"], capsys)
    code, out = run_cli(["audit", "--limit", "2"], capsys)
    assert "cli-bob" in out
    assert "queues.resume" in out

    code, out = run_cli(["limits", "--tenant", BETA, "--json"], capsys)
    got = json.loads(out)["tenants"]
    want_limits = MessageToDict(admin.GetTenantLimits(admin_pb2.GetTenantLimitsRequest(tenant=BETA)))[
        "tenants"
    ]
    # Usage moves while calls complete; the configuration does not.
    stable = ("tenant", "callsPerMinute", "callsPerHour", "callsPerDay", "concurrentCalls", "dailyBudgetUsd")
    assert [{k: t[k] for k in stable} for t in got] == [{k: t[k] for k in stable} for t in want_limits]
    code, out = run_cli(["status"], capsys)
    assert "redis" in out
    assert "dial.high" in out


def test_cli_says_what_to_check_when_the_dispatcher_is_down(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from leadflow_cli.__main__ import main

    monkeypatch.setenv("LEADFLOW_DISPATCHER_ADDR", "127.0.0.1:1")
    assert main(["queues"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach dispatcher at 127.0.0.1:1" in err
    assert "LEADFLOW_DISPATCHER_ADDR" in err
    assert "Traceback" not in err


def test_every_component_serves_metrics_and_probes_on_its_own_port(mesh: Mesh) -> None:
    wanted = {
        "gateway": ["leadflow_gateway_requests_total", "leadflow_gateway_request_seconds_bucket"],
        "compliance": [
            "leadflow_compliance_decisions_total",
            "leadflow_grpc_server_handled_total",
            "leadflow_grpc_server_handling_seconds_bucket",
        ],
        "dispatcher": [
            'leadflow_queue_depth{queue="dial.emergency"}',
            "leadflow_queue_in_flight",
            "leadflow_queue_dead_letters_open",
            f'leadflow_tenant_budget_used_ratio{{tenant="{ACME}"}}',
            'leadflow_grpc_server_handled_total{code="OK",method="SubmitLeads",service="DispatcherService"}',
        ],
        "workers": ['leadflow_worker_jobs_total{actor="enrich",outcome="ok",queue="enrich"}'],
    }
    for name, needles in wanted.items():
        base = mesh.metrics_url(name)
        body = httpx.get(f"{base}/metrics", timeout=10).text
        for needle in needles:
            assert needle in body, (name, needle)
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200, name
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200, name
    # Decisions are counted per tenant (a bounded set); never a phone number or email in a label.
    compliance = httpx.get(f"{mesh.metrics_url('compliance')}/metrics", timeout=10).text
    assert f'tenant="{BETA}"' in compliance
    assert "@" not in compliance
    # The public port has no /metrics.
    assert httpx.get(f"{mesh.gateway_url}/metrics", timeout=10).status_code == 404

"""The workers in the real mesh (compliance, dispatcher, gateway, workers as processes) on real
PostgreSQL and Redis, with vendor fakes for HubSpot, OpenAI and Twilio."""

from __future__ import annotations

import functools
import json
import signal
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from leadflow.v1 import dispatcher_pb2, dispatcher_pb2_grpc, lead_pb2, tenants_pb2
from leadflow_core.db import normalise_url
from leadflow_core.tenant_spec import TenantSpec, to_proto
from leadflow_core.testing import ServiceProcess, python_module, wait_for
from tests.e2e.mesh import Mesh, consented_lead, module_mesh, timeline_kinds
from tests.e2e.scenario import BENCH_TENANT_SPEC, clock_env
from tests.fakes.hubspot import HubSpotFake
from tests.fakes.openai import OpenAiFake
from tests.fakes.salesforce import SalesforceFake

pytestmark = pytest.mark.e2e

SIMULATOR_TOKEN = "leadflow-simulator-token"

FAST = {
    "LEADFLOW_JOB_LEASE_SECONDS": "3",
    "LEADFLOW_JOB_STUCK_SECONDS": "6",
    "LEADFLOW_CLAIM_STALE_SECONDS": "3",
    "LEADFLOW_RELAY_INTERVAL_SECONDS": "0.2",
    "LEADFLOW_RETRY_BASE_SECONDS": "0.2",
    "LEADFLOW_RETRY_MAX_SECONDS": "1",
    "LEADFLOW_MAX_RETRIES": "6",
    "LEADFLOW_BREAKER_FAILURE_THRESHOLD": "3",
    "LEADFLOW_BREAKER_OPEN_SECONDS": "1",
    "LEADFLOW_OPENAI_TIMEOUT_SECONDS": "1",
    # Longer than any test here: the replay test then meets the refused credentials still
    # cached, as an operator replaying within the production default (10 s) would.
    "LEADFLOW_PROVIDER_CONFIG_CACHE_SECONDS": "30",
    "LEADFLOW_SIMULATOR_STEP_SECONDS": "0.01",
    # A paused tenant's dials are asked about again only after an hour: a resume must release
    # them itself (see test_resume_releases_deferred_dials_at_once).
    "LEADFLOW_PAUSE_RETRY_SECONDS": "3600",
}


@pytest.fixture(scope="module")
def mesh(module_database_url: str, redis_url: str, redis_prefix: str) -> Iterator[Mesh]:
    with module_mesh(module_database_url, redis_url, redis_prefix, "workers", {**clock_env(), **FAST}) as m:
        yield m


@pytest.fixture(scope="module")
def db(mesh: Mesh) -> Iterator[Engine]:
    engine = create_engine(normalise_url(mesh.database_url))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def dispatcher(mesh: Mesh) -> dispatcher_pb2_grpc.DispatcherServiceStub:
    return mesh.dispatcher()


def new_tenant(
    mesh: Mesh,
    providers: Mapping[str, object] | None = None,
    secrets: dict[str, dict[str, str]] | None = None,
) -> str:
    """A tenant with high limits; the dial simulator's status callbacks are signed with the
    deployment's simulator token, which the tenant's `calls` source verifies."""
    name = f"w-{uuid.uuid4().hex[:8]}"
    spec = {
        **BENCH_TENANT_SPEC,
        "sources": {"api": {}, "calls": {"secretRef": {"name": "calls"}}},
        "providers": dict(providers or {}),
    }
    mesh.apply_tenant(name, spec, {"calls": {"auth_token": SIMULATOR_TOKEN}, **(secrets or {})})
    return name


def person(i: int, tag: str) -> tuple[str, str]:
    return f"+1212{5550000 + (i % 10000):07d}", f"p{i}.{tag}@example.com"


def submit(
    mesh: Mesh,
    tenant: str,
    i: int,
    tag: str,
    urgency: lead_pb2.Urgency.ValueType = lead_pb2.URGENCY_HIGH,
) -> str:
    """What the gateway does for lead `i` of a test (`tag`)."""
    phone, email = person(i, tag)
    lead = consented_lead(
        tenant, phone, email=email, last_name=f"L{i}", vendor_lead_id=f"{tag}-{i}", urgency=urgency
    )
    return mesh.submit_as_gateway(lead)


def timeline(
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, tenant: str, lead_id: str
) -> list[dispatcher_pb2.TimelineEvent]:
    return list(
        dispatcher.GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=tenant, lead_id=lead_id)).events
    )


kinds = timeline_kinds


def all_done(
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, tenant: str, ids: list[str], *need: str
) -> bool:
    return all(set(need) <= set(kinds(dispatcher, tenant, i)) for i in ids)


def test_lead_is_enriched_synced_dialed_and_its_call_settles(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, db: Engine
) -> None:
    tenant = new_tenant(mesh)
    lead_id = submit(mesh, tenant, 1, "happy")
    wait_for(
        lambda: (
            "completed"
            in " ".join(
                e.detail_json for e in timeline(dispatcher, tenant, lead_id) if e.kind == "call_status"
            )
        ),
        timeout=60,
        what="the call to complete",
    )
    seen = kinds(dispatcher, tenant, lead_id)
    for kind in ("received", "decided", "enriched", "synced", "dialing", "dialed"):
        assert kind in seen, (kind, seen)
    with db.connect() as conn:
        calls = conn.execute(
            text("SELECT count(*) FROM enrichment_simulated_calls WHERE tenant = :t AND lead_id = :l"),
            {"t": tenant, "l": lead_id},
        ).scalar()
    assert calls == 1


def test_kill_9_worker_mid_load_dials_and_syncs_each_lead_once(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, db: Engine
) -> None:
    tenant = new_tenant(mesh)
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: submit(mesh, tenant, i, "kill"), range(60)))

    def dialed_count() -> int:
        with db.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM enrichment_simulated_calls WHERE tenant = :t"), {"t": tenant}
                ).scalar()
                or 0
            )

    wait_for(lambda: dialed_count() >= 3, timeout=60, what="the first dials")
    workers = mesh.processes["workers"]
    workers.kill(signal.SIGKILL)
    replacement = ServiceProcess(
        "workers2", python_module("leadflow_enrichment"), dict(workers.env), workers.workdir
    )
    mesh.processes["workers2"] = replacement.start(wait_port=False)
    wait_for(
        lambda: all_done(dispatcher, tenant, ids, "synced", "dialed"), timeout=120, what="every lead done"
    )
    for lead_id in ids:
        seen = kinds(dispatcher, tenant, lead_id)
        assert seen.count("dialed") == 1, seen
        assert seen.count("synced") == 1, seen
    with db.connect() as conn:
        per_lead = conn.execute(
            text(
                "SELECT lead_id, count(*) FROM enrichment_simulated_calls WHERE tenant = :t GROUP BY lead_id"
            ),
            {"t": tenant},
        ).all()
        contacts = conn.execute(
            text("SELECT lead_id, count(*) FROM enrichment_crm_contacts WHERE tenant = :t GROUP BY lead_id"),
            {"t": tenant},
        ).all()
    assert sorted(r[0] for r in per_lead) == sorted(ids)
    assert {r[1] for r in per_lead} == {1}
    assert {r[1] for r in contacts} == {1}


def test_crm_429_and_500_are_retried_then_synced(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub
) -> None:
    with HubSpotFake(access_token="hs-ok") as hubspot:
        tenant = new_tenant(
            mesh,
            {"crm": {"type": "hubspot", "options": {"base_url": hubspot.url}}},
            {"provider:crm": {"access_token": "hs-ok"}},
        )
        upsert = "/crm/v3/objects/contacts/batch/upsert"
        hubspot.fail(times=2, status=429, headers={"Retry-After": "1"}, path_contains=upsert)
        hubspot.fail(times=2, status=500, path_contains=upsert)
        lead_id = submit(mesh, tenant, 1, "flaky")
        wait_for(lambda: "synced" in kinds(dispatcher, tenant, lead_id), timeout=60, what="the sync")
        upserts = hubspot.requests_to(upsert)
        assert len(upserts) >= 5  # 2 x 429, 2 x 500, then the one that worked
        # Each retry looked for the contact first (none was written) and wrote one.
        assert hubspot.contacts_with("leadflow_lead_id", lead_id) == 1
        assert "dialed" in kinds(dispatcher, tenant, lead_id) or wait_for(
            lambda: "dialed" in kinds(dispatcher, tenant, lead_id), timeout=30
        )


def restart_workers(mesh: Mesh, sig: int = signal.SIGKILL) -> None:
    """Kill every running worker process with `sig`, then start a fresh one."""
    live = [p for n, p in mesh.processes.items() if n.startswith("workers") and p.proc is not None]
    for proc in live:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.kill(sig)
    first = mesh.processes["workers"]
    name = f"workers-{uuid.uuid4().hex[:6]}"
    mesh.processes[name] = ServiceProcess(
        name, python_module("leadflow_enrichment"), dict(first.env), first.workdir
    ).start(wait_port=False)


def synced_detail(
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, tenant: str, lead_id: str
) -> dict[str, object]:
    event = next(e for e in timeline(dispatcher, tenant, lead_id) if e.kind == "synced")
    detail: dict[str, object] = json.loads(event.detail_json)
    return detail


def test_crm_write_whose_answer_is_lost_is_found_not_written_again(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub
) -> None:
    """Salesforce writes the lead, then the answer is a 500 or never comes in time: the retry
    looks the lead up by its external id, finds it, and writes nothing more."""
    with SalesforceFake(access_token="sf-ok") as salesforce:
        tenant = new_tenant(
            mesh,
            {"crm": {"type": "salesforce", "options": {"instance_url": salesforce.url}}},
            {"provider:crm": {"access_token": "sf-ok"}},
        )
        salesforce.fail(status=500, after_effect=True, path_contains="/sobjects/Lead/")
        errored = submit(mesh, tenant, 1, "sf500")
        wait_for(
            lambda: "synced" in kinds(dispatcher, tenant, errored), timeout=90, what="the sync after a 500"
        )
        # The provider timeout is 10 s: an answer 15 s late is a timeout after the write.
        salesforce.stall(seconds=15, after_effect=True, path_contains="/sobjects/Lead/")
        late = submit(mesh, tenant, 2, "sflate")
        wait_for(
            lambda: "synced" in kinds(dispatcher, tenant, late), timeout=120, what="the sync after a timeout"
        )
        for lead_id in (errored, late):
            assert salesforce.writes[lead_id] == 1, salesforce.writes
            assert salesforce.records_with(lead_id) == 1
            assert synced_detail(dispatcher, tenant, lead_id)["found"] is True
            # The retry looked before it wrote.
            assert len(salesforce.requests_to(f"/Leadflow_Id__c/{lead_id}", "GET")) >= 1


def test_crm_write_then_worker_killed_is_found_not_written_again(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub
) -> None:
    """The worker dies while HubSpot has written the lead and the answer is on its way: the
    redelivered job finds the contact by the lead id property and does not write it again."""
    with HubSpotFake(access_token="hs-kill") as hubspot:
        tenant = new_tenant(
            mesh,
            {"crm": {"type": "hubspot", "options": {"base_url": hubspot.url}}},
            {"provider:crm": {"access_token": "hs-kill"}},
        )
        hubspot.stall(seconds=60, after_effect=True, path_contains="/batch/upsert")
        lead_id = submit(mesh, tenant, 1, "hskill")
        wait_for(
            lambda: hubspot.writes[("leadflow_lead_id", lead_id)] == 1, timeout=60, what="the write to land"
        )
        restart_workers(mesh)
        wait_for(
            lambda: "synced" in kinds(dispatcher, tenant, lead_id),
            timeout=120,
            what="the sync after the kill",
        )
        assert hubspot.writes[("leadflow_lead_id", lead_id)] == 1, hubspot.writes
        assert hubspot.contacts_with("leadflow_lead_id", lead_id) == 1
        assert synced_detail(dispatcher, tenant, lead_id)["found"] is True
        assert kinds(dispatcher, tenant, lead_id).count("synced") == 1


def test_crm_refusing_dead_letters_at_once_and_replay_works(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub
) -> None:
    with HubSpotFake(access_token="hs-right") as hubspot:
        providers = {"crm": {"type": "hubspot", "options": {"base_url": hubspot.url}}}
        tenant = new_tenant(mesh, providers, {"provider:crm": {"access_token": "hs-wrong"}})
        lead_id = submit(mesh, tenant, 1, "refused")

        def dead() -> list[dispatcher_pb2.DeadLetter]:
            reply = dispatcher.ListDeadLetters(
                dispatcher_pb2.ListDeadLettersRequest(tenant=tenant, queue="crm_sync")
            )
            return list(reply.dead_letters)

        letters = wait_for(dead, timeout=60, what="a dead letter")
        assert letters[0].lead_id == lead_id
        assert letters[0].error_class == "external"
        assert letters[0].attempts == 1  # 401 cannot heal by retrying
        assert "dead_lettered" in kinds(dispatcher, tenant, lead_id)
        # The lead is still dialed: a CRM problem never blocks the call.
        wait_for(lambda: "dialed" in kinds(dispatcher, tenant, lead_id), timeout=60, what="the dial")
        # Fix the credentials, replay: the sync goes through, even while the workers' config
        # cache still holds the refused credentials (the replay reads the config fresh).
        fixed = to_proto(
            tenant,
            TenantSpec.model_validate(
                {**BENCH_TENANT_SPEC, "sources": {"api": {}, "calls": {}}, "providers": providers}
            ),
            {"provider:crm": {"access_token": "hs-right"}, "calls": {"auth_token": SIMULATOR_TOKEN}},
        )
        mesh.tenant_admin().ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=fixed))
        replayed = dispatcher.ReplayDeadLetters(
            dispatcher_pb2.ReplayDeadLettersRequest(tenant=tenant, dead_letter_id=letters[0].dead_letter_id)
        )
        assert replayed.replayed == 1
        wait_for(lambda: "synced" in kinds(dispatcher, tenant, lead_id), timeout=60, what="the replayed sync")
        assert dead() == []


def test_resume_releases_deferred_dials_at_once(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub
) -> None:
    """Leads deferred while their tenant is paused are dialed right after the resume, long
    before their recheck (an hour away here): by event order, not by timing."""
    tenant = new_tenant(mesh)
    admin = mesh.tenant_admin()
    admin.SetPaused(tenants_pb2.SetPausedRequest(name=tenant, paused=True, reason="test: paused"))
    ids = [submit(mesh, tenant, i, "paused") for i in range(3)]

    def deferral(lead_id: str) -> float | None:
        """When the lead's deferred dial is due (its recheck), once it is deferred."""
        reply = dispatcher.GetLead(dispatcher_pb2.GetLeadRequest(tenant=tenant, lead_id=lead_id))
        if reply.dial_state != dispatcher_pb2.DIAL_STATE_DEFERRED or not reply.HasField("dial_at"):
            return None
        return float(reply.dial_at.ToNanoseconds() / 1e9)

    rechecks: dict[str, float] = {}
    for lead_id in ids:
        rechecks[lead_id] = wait_for(
            functools.partial(deferral, lead_id), timeout=60, what="the lead deferred by the pause"
        )
    assert not any("dialing" in kinds(dispatcher, tenant, i) for i in ids)
    admin.SetPaused(tenants_pb2.SetPausedRequest(name=tenant, paused=False, reason="test: resumed"))
    resumed_at = time.time()
    wait_for(
        lambda: all_done(dispatcher, tenant, ids, "dialed"), timeout=60, what="the dials after the resume"
    )
    for lead_id in ids:
        dialed = next(e for e in timeline(dispatcher, tenant, lead_id) if e.kind == "dialed")
        # The recheck was an hour away; the dial came after the resume, long before it.
        assert rechecks[lead_id] > resumed_at + 3000, (rechecks[lead_id], resumed_at)
        assert dialed.at.ToNanoseconds() / 1e9 < rechecks[lead_id]


def test_llm_timeout_falls_back_to_neutral_fit_and_never_blocks(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub
) -> None:
    with OpenAiFake(api_key="sk-test") as llm:
        tenant = new_tenant(
            mesh,
            {"llm": {"type": "openai", "options": {"base_url": llm.url}}},
            {"provider:llm": {"api_key": "sk-test"}},
        )
        llm.stall(times=5, seconds=3)
        lead_id = submit(mesh, tenant, 1, "ai")
        wait_for(lambda: all_done(dispatcher, tenant, [lead_id], "enriched", "synced", "dialed"), timeout=60)
        enriched = next(e for e in timeline(dispatcher, tenant, lead_id) if e.kind == "enriched")
        detail = json.loads(enriched.detail_json)
        assert detail["fallback"] is True
        assert detail["fit_score"] == 50
        assert detail["reasons"]


def test_emergency_behind_a_thousand_low_leads_is_dialed_first(
    mesh: Mesh, dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub
) -> None:
    tenant = new_tenant(mesh)
    # Workers stopped while the backlog builds, so all 1,000 low leads wait in front.
    for name, proc in list(mesh.processes.items()):
        if name.startswith("workers"):
            proc.stop()
    with ThreadPoolExecutor(8) as pool:
        lows = list(pool.map(lambda i: submit(mesh, tenant, i, "low", lead_pb2.URGENCY_LOW), range(1000)))
    urgent = submit(mesh, tenant, 5000, "emergency", lead_pb2.URGENCY_EMERGENCY)
    env = dict(mesh.processes["workers"].env)
    mesh.processes["workers3"] = ServiceProcess(
        "workers3", python_module("leadflow_enrichment"), env, mesh.processes["workers"].workdir
    ).start(wait_port=False)

    def dialed_at(lead_id: str) -> float | None:
        for e in timeline(dispatcher, tenant, lead_id):
            if e.kind == "dialed":
                return e.at.ToNanoseconds() / 1e9
        return None

    emergency_at = wait_for(lambda: dialed_at(urgent), timeout=60, what="the emergency dial")
    low_times = [t for t in (dialed_at(i) for i in lows[::10]) if t is not None]
    earlier = [t for t in low_times if t < emergency_at]
    # The emergency does not wait for the backlog: at most a handful of lows went before it.
    assert len(earlier) <= 5, (len(earlier), len(low_times))

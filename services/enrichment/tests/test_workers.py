"""The workers in the real mesh (compliance, dispatcher, gateway, workers as processes) on real
PostgreSQL and Redis, with vendor fakes for HubSpot, OpenAI and Twilio."""

from __future__ import annotations

import json
import signal
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
}


@pytest.fixture(scope="module")
def mesh(database_url: str, redis_url: str, redis_prefix: str) -> Iterator[Mesh]:
    with module_mesh(database_url, redis_url, redis_prefix, "workers", {**clock_env(), **FAST}) as m:
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
        hubspot.fail(times=2, status=429, headers={"Retry-After": "1"})
        hubspot.fail(times=2, status=500)
        lead_id = submit(mesh, tenant, 1, "flaky")
        wait_for(lambda: "synced" in kinds(dispatcher, tenant, lead_id), timeout=60, what="the sync")
        upserts = hubspot.requests_to("/crm/v3/objects/contacts/batch/upsert")
        assert len(upserts) >= 5  # 2 x 429, 2 x 500, then the one that worked
        assert "dialed" in kinds(dispatcher, tenant, lead_id) or wait_for(
            lambda: "dialed" in kinds(dispatcher, tenant, lead_id), timeout=30
        )


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
    for name in ("workers", "workers2"):
        proc = mesh.processes.get(name)
        if proc is not None:
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

"""A SIGKILLed worker's work is back in flight within a minute, with the production recovery
settings (no shortened leases): its heartbeat stops, the dispatcher's relay sees it dead and puts
every message it had fetched, running or prefetched, back on its queue."""

from __future__ import annotations

import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from leadflow.v1 import compliance_pb2, dispatcher_pb2, dispatcher_pb2_grpc, lead_pb2
from leadflow_core import timestamps
from leadflow_core.testing import ServiceProcess, python_module, wait_for
from tests.e2e.mesh import Mesh, running_mesh
from tests.e2e.scenario import BENCH_TENANT_SPEC, clock_env

pytestmark = pytest.mark.e2e

SIMULATOR_TOKEN = "leadflow-simulator-token"
CLOCK = clock_env()
# Only what makes the calls themselves quick; leases, claims and heartbeats keep their defaults.
ENV = {**CLOCK, "LEADFLOW_SIMULATOR_STEP_SECONDS": "0.01"}


@pytest.fixture(scope="module")
def mesh(database_url: str, redis_url: str, redis_prefix: str) -> Iterator[Mesh]:
    with (
        tempfile.TemporaryDirectory(prefix="leadflow-recovery-") as tmp,
        running_mesh(database_url, redis_url, redis_prefix + "rec:", Path(tmp), ENV) as m,
    ):
        yield m


def submit(mesh: Mesh, tenant: str, i: int) -> str:
    lead = lead_pb2.Lead(
        tenant=tenant,
        source=lead_pb2.SOURCE_API,
        vendor_lead_id=f"rec-{i}",
        urgency=lead_pb2.URGENCY_HIGH,
        contact=lead_pb2.Contact(
            first_name="Ada",
            last_name=f"R{i}",
            email=f"r{i}@example.com",
            phone=lead_pb2.Phone(e164=f"+1212{5560000 + i:07d}"),
        ),
        consent=lead_pb2.ConsentEvidence(
            granted=True,
            disclosure_text="I agree that ACME may call me with an autodialer.",
            page_url="https://acme.example/quote",
            ip="203.0.113.9",
            consented_at=timestamps.to_proto(timestamps.utcnow()),
            seller=tenant,
            form_submission_id=f"sub-{uuid.uuid4().hex[:8]}",
        ),
    )
    decision = (
        mesh.compliance()
        .Evaluate(compliance_pb2.EvaluateRequest(lead=lead, purpose=compliance_pb2.EVALUATION_PURPOSE_INGEST))
        .decision
    )
    reply = mesh.dispatcher().SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=lead, decision=decision))
    return str(reply.lead_id)


def events(stub: dispatcher_pb2_grpc.DispatcherServiceStub, tenant: str, lead_id: str) -> dict[str, float]:
    """Each event kind's first time, in real seconds since the epoch (the services' clock is shifted)."""
    offset = float(CLOCK["LEADFLOW_CLOCK_OFFSET_SECONDS"])
    reply = stub.GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=tenant, lead_id=lead_id))
    out: dict[str, float] = {}
    for e in reply.events:
        out.setdefault(e.kind, e.at.ToNanoseconds() / 1e9 - offset)
    return out


def test_sigkilled_worker_work_is_back_in_flight_within_a_minute(mesh: Mesh) -> None:
    tenant = f"rec-{uuid.uuid4().hex[:8]}"
    spec = {**BENCH_TENANT_SPEC, "sources": {"api": {}, "calls": {"secretRef": {"name": "calls"}}}}
    mesh.apply_tenant(tenant, spec, {"calls": {"auth_token": SIMULATOR_TOKEN}})
    stub = mesh.dispatcher()
    # Enough leads that work is still in flight at the kill: the workers drain a few dozen a
    # second, so 40 leads were all done by the time two dials were seen.
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: submit(mesh, tenant, i), range(160)))
    wait_for(lambda: any("dialed" in events(stub, tenant, i) for i in ids), timeout=60, what="the first dial")
    workers = mesh.processes["workers"]
    workers.kill(signal.SIGKILL)
    killed_at = time.time()
    unfinished = [i for i in ids if not {"synced", "dialed"} <= set(events(stub, tenant, i))]
    mesh.processes["workers2"] = ServiceProcess(
        "workers2", python_module("leadflow_enrichment"), dict(workers.env), workers.workdir
    ).start(wait_port=False)
    # Generous: the assertion below is on the events' own times, not on how long this waited.
    wait_for(
        lambda: all({"synced", "dialed"} <= set(events(stub, tenant, i)) for i in ids),
        timeout=240,
        what="every lead synced and dialed",
    )
    assert unfinished, "the kill came too late to strand anything"
    late = {}
    for lead_id in unfinished:
        seen = events(stub, tenant, lead_id)
        took = max(seen["synced"], seen["dialed"]) - killed_at
        if took > 60:
            late[lead_id] = round(took, 1)
    assert not late, f"leads that waited more than 60 s after the kill: {late}"


def test_work_redis_lost_is_back_in_flight_within_the_lease(mesh: Mesh, redis_url: str) -> None:
    """Redis loses every message (a restart without persistence): with the default 30 s lease the
    relay finds them gone and enqueues them again; each lead's work starts within the lease
    (plus a new worker's start-up) of the loss."""
    tenant = f"rlost-{uuid.uuid4().hex[:8]}"
    spec = {**BENCH_TENANT_SPEC, "sources": {"api": {}, "calls": {"secretRef": {"name": "calls"}}}}
    mesh.apply_tenant(tenant, spec, {"calls": {"auth_token": SIMULATOR_TOKEN}})
    stub = mesh.dispatcher()
    for name, proc in list(mesh.processes.items()):
        if name.startswith("workers"):
            proc.stop()
    ids = [submit(mesh, tenant, 100 + i) for i in range(10)]
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{mesh.redis_prefix}dramatiq:*"):
        client.delete(key)
    lost_at = time.time()
    first = mesh.processes["workers"]
    mesh.processes["workers3"] = ServiceProcess(
        "workers3", python_module("leadflow_enrichment"), dict(first.env), first.workdir
    ).start(wait_port=False)
    # Enriched too: the check below reads it, and a lead's enrichment may finish after its sync
    # and dial (they do not wait for it).
    wait_for(
        lambda: all({"enriched", "synced", "dialed"} <= set(events(stub, tenant, i)) for i in ids),
        timeout=240,
        what="every lead enriched, synced and dialed",
    )
    # The lease (30 s) plus a generous allowance for the new worker to start on a busy machine.
    late = {
        i: round(events(stub, tenant, i)["enriched"] - lost_at, 1)
        for i in ids
        if events(stub, tenant, i)["enriched"] - lost_at > 30 + 15
    }
    assert not late, f"work that came back later than the lease allows: {late}"

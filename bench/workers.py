"""Benchmark helpers for `make bench`: worker throughput, emergency latency, backlog drain.

They drive a running mesh through its gRPC APIs (compliance Evaluate + dispatcher SubmitLead,
exactly what the gateway does per lead) and read the dispatcher's tables for timings, so the
numbers are about the queues and workers, not HTTP. Times come from the dispatcher's own
timeline ("received" -> "dialed"), one clock on both ends.

    figures = run_all(dispatcher_stub, compliance_stub, engine, tenant, stop_workers, start_workers)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Engine, bindparam, text

from leadflow.v1 import (
    compliance_pb2,
    compliance_pb2_grpc,
    dispatcher_pb2,
    dispatcher_pb2_grpc,
    lead_pb2,
)
from tests.e2e.mesh import consented_lead


@dataclass(frozen=True)
class Figures:
    leads_per_second: float
    emergency_p50_ms: float
    emergency_p99_ms: float
    backlog: int
    backlog_drain_seconds: float

    def lines(self) -> list[str]:
        return [
            f"workers end-to-end: {self.leads_per_second:.1f} leads/s (submit -> enriched, synced, dialed)",
            f"emergency lead-to-dial under load: p50 {self.emergency_p50_ms:.0f} ms, "
            f"p99 {self.emergency_p99_ms:.0f} ms",
            f"backlog of {self.backlog} leads drained in {self.backlog_drain_seconds:.1f} s",
        ]


# New York area codes: 10,000 distinct 555 lines each, all in one state and time zone.
_AREAS = ("212", "646", "917", "347", "718")


def phone_for(i: int) -> str:
    return f"+1{_AREAS[(i // 10000) % len(_AREAS)]}555{i % 10000:04d}"


def make_lead(tenant: str, i: int, tag: str, urgency: int) -> lead_pb2.Lead:
    """Lead `i` of a run: distinct people (leads of one person would join one call)."""
    return consented_lead(
        tenant,
        phone_for(i),
        email=f"b{i}.{tag}@example.com",
        last_name=str(i),
        vendor_lead_id=f"{tag}-{i}",
        urgency=urgency,  # type: ignore[arg-type]
        message="need a quote",
    )


def submit(
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub,
    compliance: compliance_pb2_grpc.ComplianceServiceStub,
    lead: lead_pb2.Lead,
) -> str:
    decision = compliance.Evaluate(
        compliance_pb2.EvaluateRequest(lead=lead, purpose=compliance_pb2.EVALUATION_PURPOSE_INGEST)
    ).decision
    reply = dispatcher.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=lead, decision=decision))
    return str(reply.lead_id)


def submit_many(
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub,
    compliance: compliance_pb2_grpc.ComplianceServiceStub,
    tenant: str,
    indices: Sequence[int],
    tag: str,
    urgency: int = lead_pb2.URGENCY_MEDIUM,
    concurrency: int = 16,
) -> list[str]:
    with ThreadPoolExecutor(concurrency) as pool:
        return list(
            pool.map(lambda i: submit(dispatcher, compliance, make_lead(tenant, i, tag, urgency)), indices)
        )


def _dialed(engine: Engine, tenant: str, ids: Sequence[str]) -> set[str]:
    query = text(
        "SELECT DISTINCT lead_id FROM dispatcher_events"
        " WHERE tenant = :t AND kind = 'dialed' AND lead_id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    with engine.connect() as conn:
        return {str(r[0]) for r in conn.execute(query, {"t": tenant, "ids": list(ids)})}


def wait_dialed(engine: Engine, tenant: str, ids: Sequence[str], timeout: float) -> float:
    """Seconds until every lead has its "dialed" event. Each poll asks only for the leads not
    yet seen dialed: the bench's own reads are PostgreSQL work the per-lead CPU figures count
    (asking for all of a 2,000-lead backlog every poll was over a tenth of PostgreSQL's time)."""
    start = time.monotonic()
    waiting = list(dict.fromkeys(ids))
    while True:
        chunks = [waiting[i : i + 1000] for i in range(0, len(waiting), 1000)]
        seen = set().union(*(_dialed(engine, tenant, c) for c in chunks))
        waiting = [i for i in waiting if i not in seen]
        if not waiting:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"leads not dialed within {timeout}s")
        time.sleep(0.25)


def lead_to_dial_ms(engine: Engine, tenant: str, ids: Sequence[str]) -> list[float]:
    query = text(
        "SELECT r.at, d.at FROM dispatcher_events r JOIN dispatcher_events d "
        "ON d.tenant = r.tenant AND d.lead_id = r.lead_id AND d.kind = 'dialed' "
        "WHERE r.tenant = :t AND r.kind = 'received' AND r.lead_id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    with engine.connect() as conn:
        rows = conn.execute(query, {"t": tenant, "ids": list(ids)}).all()
    return [(dialed - received).total_seconds() * 1000 for received, dialed in rows]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))]


def run_all(
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub,
    compliance: compliance_pb2_grpc.ComplianceServiceStub,
    engine: Engine,
    tenant: str,
    stop_workers: Callable[[], None],
    start_workers: Callable[[], None],
    load: int = 2000,
    emergencies: int = 50,
    backlog: int = 10_000,
    timeout: float = 1800.0,
) -> Figures:
    """The tenant must allow the volume (limits, budget) and dial without delay."""
    # 1. Throughput with every worker running: submit `load` leads, wait for every dial.
    start = time.monotonic()
    ids = submit_many(dispatcher, compliance, tenant, range(load), "load")
    wait_dialed(engine, tenant, ids, timeout)
    rate = load / (time.monotonic() - start)

    # 2. Emergency latency under load: emergencies interleaved with a stream of low leads.
    with ThreadPoolExecutor(1) as background:
        lows = background.submit(
            submit_many, dispatcher, compliance, tenant, range(load, 2 * load), "bg", lead_pb2.URGENCY_LOW
        )
        urgent: list[str] = []
        for i in range(emergencies):
            lead = make_lead(tenant, 2 * load + i, "emergency", lead_pb2.URGENCY_EMERGENCY)
            urgent.append(submit(dispatcher, compliance, lead))
        low_ids = lows.result()
    wait_dialed(engine, tenant, urgent, timeout)
    latencies = lead_to_dial_ms(engine, tenant, urgent)
    wait_dialed(engine, tenant, low_ids, timeout)

    # 3. Backlog drain: build the backlog with the workers stopped, then time them through it.
    stop_workers()
    first = 2 * load + emergencies
    backlog_ids = submit_many(dispatcher, compliance, tenant, range(first, first + backlog), "backlog")
    start_workers()
    drain = wait_dialed(engine, tenant, backlog_ids, timeout)
    return Figures(
        leads_per_second=rate,
        emergency_p50_ms=statistics.median(latencies) if latencies else float("nan"),
        emergency_p99_ms=pct(latencies, 99),
        backlog=backlog,
        backlog_drain_seconds=drain,
    )

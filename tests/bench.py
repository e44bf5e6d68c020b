"""`make bench`: drive the local mesh over loopback and print throughput and latency figures.

Starts the whole mesh as real processes on a fresh PostgreSQL database and Redis prefix (the same
harness as the end-to-end tests), posts leads with a fixed number of concurrent clients, and waits
until the dial simulator has recorded every call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis
from sqlalchemy import create_engine, text

from leadflow_core.db import normalise_url
from leadflow_core.migrations import SERVICES_WITH_SCHEMA, upgrade
from leadflow_core.testing import (
    DEFAULT_PG_ADMIN_URL,
    DEFAULT_REDIS_URL,
    ServiceProcess,
    create_database,
    drop_database,
)
from tests.e2e.mesh import Mesh, running_mesh
from tests.e2e.scenario import BENCH_TENANT_SPEC, clock_env, lead_body, tenant_secrets
from tests.fakes.meta_graph import GraphState, serve_graph


@dataclass
class Sample:
    lead_id: str
    sent_at: datetime
    ack_ms: float
    status: int


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


@contextmanager
def bench_backends() -> Iterator[tuple[str, str, str]]:
    admin = os.environ.get("LEADFLOW_TEST_DATABASE_ADMIN_URL", DEFAULT_PG_ADMIN_URL)
    redis_url = os.environ.get("LEADFLOW_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    name = f"lfbench_{uuid.uuid4().hex[:8]}"
    prefix = f"lfbench:{uuid.uuid4().hex[:8]}:"
    url = create_database(admin, name)
    try:
        for service in SERVICES_WITH_SCHEMA:
            upgrade(service, url)
        yield url, redis_url, prefix
    finally:
        drop_database(admin, name)
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)


async def post_leads(
    mesh: Mesh, api_key: str, total: int, clients: int, tag: str, clock_offset: float = 0.0, first: int = 0
) -> list[Sample]:
    samples: list[Sample] = []
    # Distinct people per lead (`first` keeps runs apart): a repeat person would join a call.
    counter = iter(range(first, first + total))
    headers = {"Authorization": f"Bearer {api_key}"}

    async def client_loop(http: httpx.AsyncClient) -> None:
        for i in counter:
            body = lead_body(i, tag=tag)
            # On the services' clock, so it compares with the dial simulator's timestamps.
            sent = datetime.now(UTC) + timedelta(seconds=clock_offset)
            t0 = time.perf_counter()
            resp = await http.post("/v1/leads", json=body, headers=headers)
            ack = (time.perf_counter() - t0) * 1000
            lead_id = resp.json().get("lead_id", "") if resp.status_code in (200, 202) else ""
            samples.append(Sample(lead_id, sent, ack, resp.status_code))

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30, limits=limits) as http:
        await asyncio.gather(*(client_loop(http) for _ in range(clients)))
    return samples


def dial_times(database_url: str, tenant: str, lead_ids: set[str], timeout: float) -> dict[str, datetime]:
    engine = create_engine(normalise_url(database_url))
    deadline = time.monotonic() + timeout
    found: dict[str, datetime] = {}
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT lead_id, MIN(created_at) FROM enrichment_simulated_calls "
                        "WHERE tenant = :t GROUP BY lead_id"
                    ),
                    {"t": tenant},
                ).all()
            found = {r[0]: r[1] for r in rows if r[0] in lead_ids}
            if len(found) >= len(lead_ids):
                break
            time.sleep(0.25)
    finally:
        engine.dispose()
    return found


def report(title: str, samples: list[Sample], elapsed: float, dialed: dict[str, datetime] | None) -> None:
    ok = [s for s in samples if s.status == 202]
    acks = [s.ack_ms for s in ok]
    print(f"\n== {title}")
    print(f"leads posted: {len(samples)}, accepted (202): {len(ok)}, other: {len(samples) - len(ok)}")
    print(f"accepted leads/s: {len(ok) / elapsed:.1f}")
    mean = statistics.fmean(acks or [0])
    print(f"ACK latency ms: p50 {pct(acks, 50):.1f}  p99 {pct(acks, 99):.1f}  mean {mean:.1f}")
    if dialed is not None:
        l2d = [(dialed[s.lead_id] - s.sent_at).total_seconds() * 1000 for s in ok if s.lead_id in dialed]
        print(f"dialed: {len(l2d)}/{len(ok)}")
        print(f"lead-to-dial ms: p50 {pct(l2d, 50):.0f}  p99 {pct(l2d, 99):.0f}")


def bench_sources(mesh: Mesh, graph: GraphState, leads: int, clients: int) -> None:
    from services.gateway import bench_sources as sources

    api_key = mesh.apply_tenant(sources.TENANT, sources.SPEC, sources.SECRETS)
    asyncio.run(sources.run_source_mix(mesh.gateway_url, api_key, graph, 40, 4, "warm"))
    stats, elapsed = asyncio.run(
        sources.run_source_mix(mesh.gateway_url, api_key, graph, leads, clients, "run")
    )
    print(f"\n== source mix (signed Meta, HubSpot, form, API), {clients} concurrent clients")
    sources.report(stats, elapsed, clients)


def bench_compliance(mesh: Mesh, evaluations: int, clients: int) -> None:
    from leadflow_compliance import bench as compliance_bench

    figures = compliance_bench.run(mesh.processes["compliance"].addr, evaluations, clients)
    print(f"\n== compliance Evaluate over gRPC, {clients} concurrent clients")
    print(
        f"evaluations/s: {figures['evaluations_per_second']}  "
        f"p50 {figures['p50_ms']} ms  p99 {figures['p99_ms']} ms  ({int(figures['evaluations'])} evaluations)"
    )


def _stop(proc: ServiceProcess) -> None:
    proc.stop()


def _start(proc: ServiceProcess) -> None:
    proc.start(wait_port=False)


def bench_workers(mesh: Mesh, db_url: str, load: int, emergencies: int, backlog: int) -> None:
    from leadflow_enrichment import benchmark

    mesh.apply_tenant("bench-workers", BENCH_TENANT_SPEC, tenant_secrets())
    workers = mesh.processes["workers"]
    engine = create_engine(normalise_url(db_url))
    try:
        figures = benchmark.run_all(
            mesh.dispatcher(),
            mesh.compliance(),
            engine,
            "bench-workers",
            stop_workers=lambda: _stop(workers),
            start_workers=lambda: _start(workers),
            load=load,
            emergencies=emergencies,
            backlog=backlog,
        )
    finally:
        engine.dispose()
    print(
        f"\n== workers: end to end with every worker running ({load} leads, then {emergencies} emergencies)"
    )
    print(f"end-to-end leads/s: {figures.leads_per_second:.1f}")
    print(
        f"emergency lead-to-dial under load ms: p50 {figures.emergency_p50_ms:.0f}  "
        f"p99 {figures.emergency_p99_ms:.0f}"
    )
    print(f"backlog of {figures.backlog} leads drained in {figures.backlog_drain_seconds:.1f} s")


SECTIONS = ("api", "sources", "compliance", "workers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    parser.add_argument("--leads", type=int, default=500, help="direct-API leads")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--source-leads", type=int, default=800)
    parser.add_argument("--evaluations", type=int, default=2000)
    parser.add_argument("--load", type=int, default=1000, help="leads for the end-to-end worker figure")
    parser.add_argument("--emergencies", type=int, default=50)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--dial-timeout", type=float, default=600.0)
    args = parser.parse_args()
    sections = args.only or list(SECTIONS)
    env = clock_env()
    offset = float(env["LEADFLOW_CLOCK_OFFSET_SECONDS"])
    with (
        serve_graph("bench-page-token") as (graph_url, graph),
        bench_backends() as (db_url, redis_url, prefix),
        tempfile.TemporaryDirectory() as tmp,
        running_mesh(
            db_url, redis_url, prefix, Path(tmp), {**env, "LEADFLOW_META_GRAPH_URL": graph_url}
        ) as mesh,
    ):
        if "api" in sections:
            api_key = mesh.apply_tenant("bench", BENCH_TENANT_SPEC, tenant_secrets())
            # Warm-up: connections, caches, first-import costs.
            asyncio.run(post_leads(mesh, api_key, 20, 4, "warm", offset, first=5000))
            t0 = time.perf_counter()
            samples = asyncio.run(post_leads(mesh, api_key, args.leads, args.clients, "run", offset))
            elapsed = time.perf_counter() - t0
            ids = {s.lead_id for s in samples if s.status == 202}
            dialed = dial_times(db_url, "bench", ids, args.dial_timeout)
            report(f"direct API, {args.clients} concurrent clients", samples, elapsed, dialed)
        if "sources" in sections:
            bench_sources(mesh, graph, args.source_leads, args.clients)
        if "compliance" in sections:
            bench_compliance(mesh, args.evaluations, 8)
        if "workers" in sections:
            bench_workers(mesh, db_url, args.load, args.emergencies, args.backlog)


if __name__ == "__main__":
    main()

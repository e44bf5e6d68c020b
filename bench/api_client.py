"""The direct API driven by a Python client, for the end-to-end figure (lead posted -> dialed).

The durable-ACK figure comes from `bench.ack` (wrk); a Python client on the same two cores spends
3-4 ms CPU per request and would measure itself."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import create_engine, text

from bench.stats import pct
from leadflow_core.db import normalise_url
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import lead_body


@dataclass
class Sample:
    lead_id: str
    sent_at: datetime
    ack_ms: float
    status: int


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

"""Benchmark of the gateway's sources: a mix of signed Meta, HubSpot, form and API leads posted by
N concurrent clients against the real mesh; prints accepted leads/s and ACK p50/p99 per source.

    uv run python -m services.gateway.bench_sources --leads 800 --clients 16

`run_source_mix(gateway_url, api_key, graph, ...)` is what `make bench` can call with its own mesh,
as long as that gateway's `LEADFLOW_META_GRAPH_URL` points at `graph`'s fake Graph API.
"""

# ruff: noqa: S105 - the bench tenant's made-up secrets
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from prometheus_client.parser import text_string_to_metric_families

from leadflow_gateway import signatures
from tests.bench import bench_backends, pct
from tests.e2e.mesh import running_mesh
from tests.fakes.meta_graph import GraphState, serve_graph

SOURCES = ("meta", "hubspot", "form", "api")
APP_SECRET = "bench-meta-app-secret"
PAGE_TOKEN = "bench-page-token"
HUBSPOT_SECRET = "bench-hubspot-secret"
FORM_KEY = "bench-form-key"
TENANT = "bench-sources"
SPEC: dict[str, Any] = {
    "displayName": "Source mix bench",
    "limits": {
        "callsPerMinute": 100000,
        "callsPerHour": 1000000,
        "callsPerDay": 10000000,
        "concurrentCalls": 10000,
    },
    "budget": {"dailyUsd": "1000000.00"},
    "policy": {"defaultRegion": "US"},
    "sources": {
        "api": {},
        "meta": {"secretRef": {"name": "meta"}},
        "hubspot": {"secretRef": {"name": "hubspot"}},
        "form": {"secretRef": {"name": "form"}},
    },
}
SECRETS = {
    "meta": {"app_secret": APP_SECRET, "page_access_token": PAGE_TOKEN, "verify_token": "v"},
    "hubspot": {"client_secret": HUBSPOT_SECRET},
    "form": {"form_key": FORM_KEY},
}


@dataclass
class SourceStats:
    acks_ms: list[float] = field(default_factory=list)
    accepted: int = 0
    refused: dict[int, int] = field(default_factory=lambda: defaultdict(int))


def _phone(i: int) -> str:
    return f"+1212555{i % 10000:04d}"


def build_request(
    source: str, i: int, tag: str, base: str, api_key: str, graph: GraphState
) -> tuple[str, bytes, dict[str, str]]:
    """One signed delivery, exactly as the vendor would send it."""
    if source == "meta":
        leadgen_id = str(10**12 + i)
        graph.add_lead(
            leadgen_id,
            {"full_name": [f"Meta {tag} {i}"], "phone_number": [_phone(i)]},
            "2024-03-01T10:00:00+0000",
        )
        doc = {
            "object": "page",
            "entry": [
                {
                    "id": "1",
                    "time": 1,
                    "changes": [
                        {
                            "field": "leadgen",
                            "value": {"leadgen_id": leadgen_id, "page_id": "1", "form_id": "2"},
                        }
                    ],
                }
            ],
        }
        body = json.dumps(doc, separators=(",", ":")).encode()
        return (
            f"/v1/webhooks/{TENANT}/meta",
            body,
            {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": signatures.meta_signature(APP_SECRET, body),
            },
        )
    if source == "hubspot":
        path = f"/v1/webhooks/{TENANT}/hubspot"
        body = json.dumps(
            {
                "objectId": f"{tag}{i}",
                "properties": {
                    "firstname": {"value": "Hub"},
                    "phone": {"value": _phone(i)},
                    "message": {"value": "no heat"},
                },
            }
        ).encode()
        ts = str(int(time.time() * 1000))
        return (
            path,
            body,
            {
                "Content-Type": "application/json",
                "X-HubSpot-Request-Timestamp": ts,
                "X-HubSpot-Signature-v3": signatures.hubspot_v3_signature(
                    HUBSPOT_SECRET, "POST", base + path, body, ts
                ),
            },
        )
    if source == "form":
        body = urlencode(
            {
                "form_key": FORM_KEY,
                "name": f"Form {i}",
                "phone": _phone(i),
                "consent": "on",
                "lead_ref": f"{tag}-{i}",
            }
        ).encode()
        return (
            f"/v1/webhooks/{TENANT}/form",
            body,
            {"Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": f"form-{tag}-{i}"},
        )
    body = json.dumps({"full_name": f"Api {i}", "phone": _phone(i), "vendor_lead_id": f"{tag}-{i}"}).encode()
    return "/v1/leads", body, {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}


async def run_source_mix(
    base_url: str, api_key: str, graph: GraphState, total: int, clients: int, tag: str
) -> tuple[dict[str, SourceStats], float]:
    stats = {s: SourceStats() for s in SOURCES}
    counter = iter(range(total))
    mix = itertools.cycle(SOURCES)

    async def client_loop(http: httpx.AsyncClient) -> None:
        for i in counter:
            source = next(mix)
            path, body, headers = build_request(source, i, tag, base_url, api_key, graph)
            t0 = time.perf_counter()
            resp = await http.post(path, content=body, headers=headers)
            ms = (time.perf_counter() - t0) * 1000
            if resp.status_code in (200, 202):
                stats[source].accepted += 1
                stats[source].acks_ms.append(ms)
            else:
                stats[source].refused[resp.status_code] += 1

    t0 = time.perf_counter()
    async with httpx.AsyncClient(
        base_url=base_url, timeout=30, limits=httpx.Limits(max_connections=clients)
    ) as http:
        await asyncio.gather(*(client_loop(http) for _ in range(clients)))
    return stats, time.perf_counter() - t0


def report(stats: dict[str, SourceStats], elapsed: float, clients: int) -> None:
    total = sum(s.accepted for s in stats.values())
    print(f"\n== source mix (meta, hubspot, form, api), {clients} concurrent clients, {elapsed:.1f}s")
    print(f"accepted leads/s, all sources: {total / elapsed:.1f}")
    for name, s in stats.items():
        refused = dict(s.refused) or "-"
        print(
            f"{name:8s} accepted {s.accepted:5d}  {s.accepted / elapsed:7.1f}/s  "
            f"ACK p50 {pct(s.acks_ms, 50):6.1f} ms  p99 {pct(s.acks_ms, 99):6.1f} ms  refused {refused}"
        )


def pure_costs(rounds: int = 2000) -> None:
    """CPU per lead of verifying, parsing and normalising each source, without any I/O."""
    from leadflow.v1 import lead_pb2, tenant_pb2
    from leadflow_gateway.body import parse_form
    from leadflow_gateway.fields import map_fields
    from leadflow_gateway.normalise import Envelope, build_lead
    from leadflow_gateway.sources import api, hubspot, meta

    policy = tenant_pb2.TenantPolicy(default_region="US")
    graph_doc = {
        "id": "1",
        "field_data": [
            {"name": "full_name", "values": ["Ada L"]},
            {"name": "phone_number", "values": ["+12125550100"]},
        ],
    }
    notification = json.dumps(
        {
            "object": "page",
            "entry": [{"id": "1", "changes": [{"field": "leadgen", "value": {"leadgen_id": "1"}}]}],
        }
    ).encode()
    hub_body = json.dumps(
        {"objectId": 1, "properties": {"firstname": {"value": "Hub"}, "phone": {"value": "2125550100"}}}
    ).encode()
    form_body = urlencode(
        {"form_key": FORM_KEY, "name": "Form Lead", "phone": "2125550100", "consent": "on"}
    ).encode()
    api_body = json.dumps({"full_name": "Api Lead", "phone": "2125550100", "email": "a@example.com"}).encode()
    meta_sig = signatures.meta_signature(APP_SECRET, notification)
    ts = str(int(time.time() * 1000))
    hub_sig = signatures.hubspot_v3_signature(HUBSPOT_SECRET, "POST", "http://x/h", hub_body, ts)

    def env(source: lead_pb2.Source.ValueType) -> Envelope:
        return Envelope(tenant="t", source=source)

    def do_meta() -> None:
        assert signatures.verify_meta(APP_SECRET, notification, meta_sig)
        (change,) = meta.parse_notification(json.loads(notification))
        build_lead(
            meta.map_graph_lead(graph_doc, change, {}), env(lead_pb2.SOURCE_META), policy, strict=False
        )

    def do_hubspot() -> None:
        now = int(time.time() * 1000)
        assert signatures.verify_hubspot_v3(
            HUBSPOT_SECRET, "POST", "http://x/h", hub_body, ts, hub_sig, now, 300_000
        )
        ((mapped, _),) = hubspot.parse(json.loads(hub_body), {})
        build_lead(mapped, env(lead_pb2.SOURCE_HUBSPOT), policy, strict=False)

    def do_form() -> None:
        mapped = map_fields(parse_form(form_body), {}, {}, skip=("form_key",))
        build_lead(mapped, env(lead_pb2.SOURCE_FORM), policy, strict=True)

    def do_api() -> None:
        build_lead(api.to_mapped(api.parse(api_body)), env(lead_pb2.SOURCE_API), policy, strict=True)

    print("CPU per lead to verify + parse + normalise (no I/O):")
    for name, fn in (("meta", do_meta), ("hubspot", do_hubspot), ("form", do_form), ("api", do_api)):
        t0 = time.perf_counter()
        for _ in range(rounds):
            fn()
        print(f"  {name:8s} {(time.perf_counter() - t0) / rounds * 1e6:7.1f} us")


def dependency_report(base_url: str) -> None:
    """Mean time per request in each dependency, from the gateway's own histograms: what is left of
    the ACK is the gateway's parsing, signatures and HTTP handling."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    text = httpx.get(f"{base_url}/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name not in ("leadflow_gateway_dependency_seconds", "leadflow_gateway_request_seconds"):
            continue
        for sample in family.samples:
            label = sample.labels.get("call") or sample.labels.get("source")
            key = f"{family.name.removeprefix('leadflow_gateway_')}:{label}"
            if sample.name.endswith("_sum"):
                sums[key][0] = sample.value
            elif sample.name.endswith("_count"):
                sums[key][1] = sample.value
    print("mean ms per call (whole run incl. warm-up):")
    for key, (total, count) in sorted(sums.items()):
        if count:
            print(f"  {key:40s} {total / count * 1000:7.1f} ms  x{int(count)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=800)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--pure-only", action="store_true", help="only the CPU cost per lead, no mesh")
    args = parser.parse_args()
    pure_costs()
    if args.pure_only:
        return
    with (
        serve_graph(PAGE_TOKEN) as (graph_url, graph),
        bench_backends() as (db_url, redis_url, prefix),
        tempfile.TemporaryDirectory() as tmp,
        running_mesh(db_url, redis_url, prefix, Path(tmp), {"LEADFLOW_META_GRAPH_URL": graph_url}) as mesh,
    ):
        api_key = mesh.apply_tenant(TENANT, SPEC, SECRETS)
        asyncio.run(run_source_mix(mesh.gateway_url, api_key, graph, 40, 4, "warm"))
        stats, elapsed = asyncio.run(
            run_source_mix(mesh.gateway_url, api_key, graph, args.leads, args.clients, "run")
        )
        report(stats, elapsed, args.clients)
        dependency_report(mesh.metrics_url("gateway"))
        failures = [
            line for line in mesh.processes["gateway"].logs().splitlines() if "dependency_failed" in line
        ]
        if failures:
            print(f"dependency failures seen by the gateway: {len(failures)}; last: {failures[-1][:300]}")


if __name__ == "__main__":
    main()

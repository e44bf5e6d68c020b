"""Evaluate latency (p50/p99) and evaluations per second over gRPC against a running server.

`run(addr, total, concurrency)` returns the figures; `make bench` can call it, and
services/compliance/bench_evaluate.py runs it from the command line.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from datetime import UTC, datetime

from leadflow.v1 import compliance_pb2, compliance_pb2_grpc, lead_pb2, tenants_pb2, tenants_pb2_grpc
from leadflow_core.grpc_clients import channel
from leadflow_core.tenant_spec import TenantSpec, to_proto
from leadflow_core.timestamps import to_proto as ts


def _lead(tenant: str, i: int) -> lead_pb2.Lead:
    return lead_pb2.Lead(
        lead_id=uuid.uuid4().hex,
        tenant=tenant,
        contact=lead_pb2.Contact(phone=lead_pb2.Phone(e164=f"+1212555{i % 10000:04d}")),
        consent=lead_pb2.ConsentEvidence(
            granted=True,
            consented_at=ts(datetime(2026, 1, 1, tzinfo=UTC)),
            disclosure_text="I agree to be called",
            seller=tenant,
            form_submission_id="bench",
        ),
    )


def run(addr: str, total: int = 2000, concurrency: int = 8) -> dict[str, float]:
    ch = channel(addr, default_timeout=30.0)
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    tenants_pb2_grpc.TenantAdminServiceStub(ch).ApplyTenant(
        tenants_pb2.ApplyTenantRequest(tenant=to_proto(tenant, TenantSpec.model_validate({})))
    )
    stub = compliance_pb2_grpc.ComplianceServiceStub(ch)
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def worker() -> None:
        mine: list[float] = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            req = compliance_pb2.EvaluateRequest(
                lead=_lead(tenant, i), purpose=compliance_pb2.EVALUATION_PURPOSE_WHAT_IF, actor="bench"
            )
            start = time.perf_counter()
            stub.Evaluate(req)
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ch.close()
    q = statistics.quantiles(latencies, n=100)
    return {
        "evaluations": float(len(latencies)),
        "concurrency": float(concurrency),
        "evaluations_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
    }

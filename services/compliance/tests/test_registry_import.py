"""A large generated National DNC Registry file, streamed over gRPC while evaluation goes on.

The size is LEADFLOW_TEST_DNC_NUMBERS (default 1,000,000). Time and the server's peak memory
are printed (run with -s to see them); the assertions are about correctness and about
evaluation answering during the import.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import phonenumbers

from leadflow.v1 import compliance_pb2, compliance_pb2_grpc, decision_pb2, tenants_pb2_grpc
from leadflow_core.testing import ServiceProcess
from services.compliance.tests.conftest import make_tenant
from services.compliance.tests.test_compliance_grpc import evaluate, lead, rule_ids

NUMBERS = int(os.environ.get("LEADFLOW_TEST_DNC_NUMBERS", "1000000"))
CHUNK = 1 << 20
AREA_CODES = (201, 212, 305, 312, 404, 415, 512, 617, 702, 713, 818, 917)


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def generate(path: Path, count: int) -> list[int]:
    rng = random.Random(7)
    sample: list[int] = []
    with path.open("w") as f:
        for i in range(count):
            area = rng.choice(AREA_CODES)
            number = rng.randrange(2_000_000, 9_999_999)
            f.write(f"{area},{number}\n")
            if i % (count // 5 or 1) == 0:
                sample.append(area * 10_000_000 + number)
    return sample


def test_large_registry_import(
    compliance: compliance_pb2_grpc.ComplianceServiceStub,
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
    compliance_server: ServiceProcess,
    workdir: Path,
) -> None:
    path = workdir / "registry.txt"
    sample = generate(path, NUMBERS)
    tenant = make_tenant(admin).name
    assert compliance_server.proc is not None
    rss_before = peak_rss_kb(compliance_server.proc.pid)

    def chunks() -> Iterator[compliance_pb2.ImportDncRegistryChunk]:
        with path.open("rb") as f:
            first = True
            while data := f.read(CHUNK):
                yield compliance_pb2.ImportDncRegistryChunk(data=data, replace=first)
                first = False

    answered: list[float] = []
    done = threading.Event()

    def evaluate_meanwhile() -> None:
        while not done.is_set():
            start = time.perf_counter()
            evaluate(compliance, lead(tenant, "+12125550199"))
            answered.append(time.perf_counter() - start)

    side = threading.Thread(target=evaluate_meanwhile)
    side.start()
    started = time.perf_counter()
    try:
        result = compliance.ImportDncRegistry(chunks(), timeout=600)
    finally:
        elapsed = time.perf_counter() - started
        done.set()
        side.join()
    rss_after = peak_rss_kb(compliance_server.proc.pid)
    print(
        f"\nDNC import: {NUMBERS} lines ({path.stat().st_size / 1e6:.1f} MB) in {elapsed:.1f} s "
        f"({NUMBERS / elapsed:,.0f} lines/s); server peak RSS {rss_before / 1024:.0f} -> "
        f"{rss_after / 1024:.0f} MiB; {len(answered)} evaluations answered during the import, "
        f"slowest {max(answered, default=0) * 1000:.0f} ms"
    )
    assert result.lines_rejected == 0
    # Random numbers repeat now and then; duplicates count once.
    assert NUMBERS * 0.99 <= result.numbers_loaded <= NUMBERS
    assert answered, "evaluation did not answer during the import"
    for number in sample:
        if not phonenumbers.is_valid_number(phonenumbers.parse(f"+1{number}")):
            continue
        d = evaluate(compliance, lead(tenant, f"+1{number}", consent=False))
        assert "dnc.registry" in rule_ids(d)
    assert evaluate(compliance, lead(tenant, "+12125550199")).action == decision_pb2.DIAL_ACTION_DIAL_NOW

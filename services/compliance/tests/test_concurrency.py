"""Many real processes reserving at once, through two compliance servers, never overspend."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from leadflow.v1 import tenants_pb2, tenants_pb2_grpc
from leadflow_core.grpc_clients import channel
from leadflow_core.testing import ServiceProcess, python_module, service_env
from services.compliance.tests.conftest import make_tenant

WORKER = Path(__file__).with_name("reserve_worker.py")
OPEN = int(datetime(2026, 11, 18, 15, 0, tzinfo=ZoneInfo("America/New_York")).timestamp())
WORKERS = 6
PER_WORKER = 8


@pytest.fixture(scope="module")
def second_server(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = service_env(database_url, redis_url, redis_prefix, {"LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:0"})
    proc = ServiceProcess(
        "compliance2", python_module("leadflow_compliance"), env, tmp_path_factory.mktemp("c2")
    )
    proc.start()
    yield proc
    proc.stop()


def run_workers(addrs: str, tenant: str, cost: str) -> list[str]:
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), addrs, tenant, str(w), str(PER_WORKER), cost, str(OPEN)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for w in range(WORKERS)
    ]
    got: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()
        got.extend(json.loads(out))
    return got


@pytest.mark.parametrize(
    ("limits", "budget", "cost", "expected"),
    [
        # The budget binds: $10.00 at $0.50 a call is 20 calls.
        (
            {"callsPerMinute": 1000, "callsPerHour": 1000, "callsPerDay": 1000, "concurrentCalls": 1000},
            "10.00",
            "0.50",
            20,
        ),
        # Concurrency binds: nothing is settled, so 7 slots are all there is.
        (
            {"callsPerMinute": 1000, "callsPerHour": 1000, "callsPerDay": 1000, "concurrentCalls": 7},
            "1000.00",
            "0.01",
            7,
        ),
        # The per-minute rate binds.
        (
            {"callsPerMinute": 13, "callsPerHour": 1000, "callsPerDay": 1000, "concurrentCalls": 1000},
            "1000.00",
            "0.01",
            13,
        ),
    ],
)
def test_parallel_reservations_never_exceed_limits(
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
    compliance_server: ServiceProcess,
    second_server: ServiceProcess,
    limits: dict[str, int],
    budget: str,
    cost: str,
    expected: int,
) -> None:
    tenant = make_tenant(admin, limits=limits, budget={"dailyUsd": budget}).name
    got = run_workers(f"{compliance_server.addr},{second_server.addr}", tenant, cost)
    assert len(got) == len(set(got)) == expected
    usage = admin.GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant)).usage
    assert usage.calls_today == expected
    assert usage.active_calls == expected
    from decimal import Decimal

    assert Decimal(usage.spend_today_usd) == Decimal(cost) * expected <= Decimal(budget)
    ch = channel(second_server.addr)
    second_admin = tenants_pb2_grpc.TenantAdminServiceStub(ch)
    assert second_admin.GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant)).usage == usage
    ch.close()

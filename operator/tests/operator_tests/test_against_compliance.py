"""The reconcile path against a real compliance process on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
import grpc.aio
import pytest

from leadflow_core.testing import ServiceProcess
from leadflow_operator import reconcile
from leadflow_operator.compliance import TenantAdmin

SECRETS = {"acme-meta": {"appSecret": "meta-app-secret"}, "acme-twilio": {"authToken": "tw-token"}}


def spec(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "displayName": "ACME HVAC",
        "limits": {"callsPerMinute": 10, "callsPerHour": 100, "callsPerDay": 1000, "concurrentCalls": 5},
        "budget": {"dailyUsd": "100.00"},
        "sources": {"meta": {"secretRef": {"name": "acme-meta", "key": "appSecret"}}},
        "providers": {"dialer": {"type": "twilio", "secretRef": {"name": "acme-twilio"}}},
    }
    base.update(overrides)
    return base


def unique() -> str:
    return f"op-{uuid.uuid4().hex[:10]}"


async def test_apply_get_pause_usage_deactivate(compliance_process: ServiceProcess) -> None:
    admin = TenantAdmin(compliance_process.addr, timeout=30)
    name = unique()
    try:
        desired = reconcile.desired_tenant(name, reconcile.parse_spec(spec()), SECRETS)
        first = await admin.apply(desired)
        assert first.created
        assert reconcile.change_event(first, None) is not None

        held = await admin.get(name)
        assert held is not None
        assert (held.display_name, held.limits.calls_per_day, held.budget.daily_usd) == (
            "ACME HVAC",
            1000,
            "100.00",
        )
        assert held.providers["dialer"] == "twilio"
        # Compliance took the secrets but never shows them again.
        assert "app_secret" in held.sources["meta"].secret_names
        assert dict(held.sources["meta"].secrets) == {}

        again = await admin.apply(desired)
        assert not again.created
        assert not again.changed, "re-applying the same spec changes nothing"
        assert reconcile.change_event(again, "Active") is None

        paused = await admin.apply(
            reconcile.desired_tenant(name, reconcile.parse_spec(spec(paused=True)), SECRETS)
        )
        assert paused.changed
        assert paused.tenant.paused
        assert reconcile.change_event(paused, "Active") == ("Paused", "dialing stopped")
        held = await admin.get(name)
        assert held is not None
        assert reconcile.phase_of(held) == "Paused"

        usage = await admin.usage(name)
        status = reconcile.usage_status(reconcile.Observed(2, [], datetime.now(UTC)), usage, held)
        assert status["usage"]["callsToday"] == 0
        assert status["usage"]["dailyBudgetUsd"] == "100.00"

        assert await admin.deactivate(name)
        held = await admin.get(name)
        assert held is not None, "data is kept for audit"
        assert reconcile.phase_of(held) == "Deactivated"
    finally:
        await admin.close()


async def test_unknown_tenant(compliance_process: ServiceProcess) -> None:
    admin = TenantAdmin(compliance_process.addr, timeout=30)
    try:
        assert await admin.get(unique()) is None
        assert not await admin.deactivate(unique())
    finally:
        await admin.close()


async def test_compliance_refusal_is_permanent(compliance_process: ServiceProcess) -> None:
    """A spec compliance refuses (here a budget the CRD's pattern would have caught) is not retried."""
    admin = TenantAdmin(compliance_process.addr, timeout=30)
    try:
        tenant = reconcile.desired_tenant(unique(), reconcile.parse_spec(spec()), SECRETS)
        tenant.budget.daily_usd = "-1"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.apply(tenant)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reconcile.retry_kind(err.value.code()) == "permanent"
    finally:
        await admin.close()


async def test_compliance_down_is_temporary() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    admin = TenantAdmin(f"127.0.0.1:{port}", timeout=2)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.get("acme")
        assert reconcile.retry_kind(err.value.code()) == "temporary"
    finally:
        await admin.close()


def test_the_charts_helm_test_pod_passes_against_compliance(
    compliance_process: ServiceProcess, tls_dir: Path, tmp_path: Path
) -> None:
    """The `helm test` pod's script, run as the pod would run it, against a real compliance."""
    from tests.chart.rendering import objects, of_kind

    pod = of_kind(objects({}), "Pod")["lf-leadflow-test-grpc-health"]
    container = pod["spec"]["containers"][0]
    assert container["command"][:2] == ["python", "-c"]
    # The `cli` certificate, laid out as the mounted Secret is.
    for source, target in (("ca.crt", "ca.crt"), ("cli.crt", "tls.crt"), ("cli.key", "tls.key")):
        shutil.copy(tls_dir / source, tmp_path / target)
    env = {"TARGET": compliance_process.addr, "PATH": os.environ["PATH"], "TLS_DIR": str(tmp_path)}
    ok = subprocess.run(
        [sys.executable, "-c", container["command"][2]], env=env, capture_output=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert b"leadflow.v1.TenantAdminService: SERVING" in ok.stdout
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    env["TARGET"] = dead
    down = subprocess.run(
        [sys.executable, "-c", container["command"][2]], env=env, capture_output=True, timeout=60
    )
    assert down.returncode != 0

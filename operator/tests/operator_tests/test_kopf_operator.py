"""The whole kopf operator (KopfRunner) against kmock's Kubernetes emulator and a real compliance:
create, edit, pause, delete a Tenant; assert what compliance holds and what the operator wrote."""

from __future__ import annotations

import base64
import socket
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import pytest
from kopf.testing import KopfRunner

from leadflow.v1 import tenant_pb2, tenants_pb2, tenants_pb2_grpc
from leadflow_core.grpc_clients import channel
from leadflow_core.testing import ServiceProcess, python_module, service_env, wait_for
from leadflow_operator import handlers

from .kube_emulator import KubeEmulator

NS = "leadflow"
T = TypeVar("T")


def b64(d: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in d.items()}


class Compliance:
    """What compliance holds, read through the same API the CLI uses."""

    def __init__(self, addr: str) -> None:
        self._channel = channel(addr, default_timeout=30)
        self._stub = tenants_pb2_grpc.TenantAdminServiceStub(self._channel)

    def tenant(self, name: str) -> tenant_pb2.Tenant | None:
        try:
            return self._stub.GetTenant(tenants_pb2.GetTenantRequest(name=name)).tenant
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def source_secrets(self, name: str, source: str) -> dict[str, str]:
        """What the gateway gets: the source's secrets (compliance's internal RPC)."""
        resp = self._stub.GetSourceConfig(tenants_pb2.GetSourceConfigRequest(tenant=name, source=source))
        return dict(resp.config.secrets)

    def close(self) -> None:
        self._channel.close()


@pytest.fixture
def compliance(compliance_process: ServiceProcess) -> Any:
    client = Compliance(compliance_process.addr)
    yield client
    client.close()


@pytest.fixture
def operator_env(
    monkeypatch: pytest.MonkeyPatch, kube: KubeEmulator, compliance_process: ServiceProcess
) -> None:
    monkeypatch.setenv("LEADFLOW_COMPLIANCE_ADDR", compliance_process.addr)
    monkeypatch.setenv("LEADFLOW_OPERATOR_KUBE_SERVER", kube.url)
    monkeypatch.setenv("LEADFLOW_OPERATOR_NAMESPACE", NS)
    monkeypatch.setenv("LEADFLOW_RPC_TIMEOUT_SECONDS", "10")


def run_operator() -> KopfRunner:
    return KopfRunner(
        ["run", "--standalone", "--namespace", NS, "-m", "leadflow_operator.handlers"],
        timeout=60,
    )


def eventually(predicate: Callable[[], T | None], what: str) -> T:
    return wait_for(predicate, timeout=30, interval=0.1, what=what)


def wait_tenant(
    kube: KubeEmulator, name: str, pred: Callable[[dict[str, Any]], object], what: str
) -> dict[str, Any]:
    """The Tenant object once it satisfies `pred`."""

    def ready() -> dict[str, Any] | None:
        obj = kube.tenant(NS, name)
        return obj if obj is not None and pred(obj) else None

    return eventually(ready, what)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return None


def reasons(kube: KubeEmulator, name: str) -> list[str]:
    return [e.get("reason", "") for e in kube.events(NS) if e.get("involvedObject", {}).get("name") == name]


@pytest.mark.usefixtures("operator_env")
def test_tenant_lifecycle(kube: KubeEmulator, compliance: Compliance) -> None:
    name = f"acme-{uuid.uuid4().hex[:8]}"
    kube.create_secret(NS, "acme-meta", b64({"appSecret": "meta-app-secret"}))
    spec = {
        "displayName": "ACME HVAC",
        "limits": {"callsPerMinute": 10, "callsPerHour": 100, "callsPerDay": 1000, "concurrentCalls": 5},
        "budget": {"dailyUsd": "100.00"},
        "sources": {"meta": {"secretRef": {"name": "acme-meta", "key": "appSecret"}}},
    }
    with run_operator() as runner:
        # create
        kube.create_tenant(NS, name, spec)
        held = eventually(lambda: compliance.tenant(name), "compliance to hold the tenant")
        assert held.display_name == "ACME HVAC"
        assert held.limits.concurrent_calls == 5
        assert "app_secret" in held.sources["meta"].secret_names

        # The create may be applied twice (its Secret's watch event also reconciles): the status
        # settles on the revision compliance holds, whichever write came last.
        def settled(o: dict[str, Any]) -> bool:
            current = compliance.tenant(name)
            status = o.get("status", {})
            return (
                current is not None
                and status.get("observedGeneration") == 1
                and status.get("revision") == current.revision
            )

        obj = wait_tenant(kube, name, settled, "status at compliance's revision")
        assert obj["status"]["phase"] == "Active"
        assert obj["status"]["revision"] >= held.revision
        ready = condition(obj, "Ready")
        assert ready is not None
        assert ready["status"] == "True"
        assert "leadflow.dev/deactivate" in obj["metadata"]["finalizers"]
        # the timer reports usage
        obj = wait_tenant(kube, name, lambda o: "usage" in o.get("status", {}), "usage in status")
        assert obj["status"]["usage"]["callsToday"] == 0
        assert obj["status"]["usage"]["dailyBudgetUsd"] == "100.00"

        # a rotated Secret reaches compliance within one timer interval
        assert compliance.source_secrets(name, "meta")["app_secret"] == "meta-app-secret"
        kube.replace_secret(NS, "acme-meta", b64({"appSecret": "rotated-app-secret"}))
        eventually(
            lambda: compliance.source_secrets(name, "meta")["app_secret"] == "rotated-app-secret",
            "the rotated secret in compliance",
        )

        # edit
        kube.patch_tenant_spec(NS, name, {"limits": {"callsPerDay": 50}, "budget": {"dailyUsd": "25.50"}})
        eventually(
            lambda: (t := compliance.tenant(name)) and t.limits.calls_per_day == 50, "the edit in compliance"
        )
        edited = compliance.tenant(name)
        assert edited is not None
        assert edited.budget.daily_usd == "25.50"
        wait_tenant(kube, name, lambda o: o["status"].get("observedGeneration") == 2, "observedGeneration 2")

        # pause
        kube.patch_tenant_spec(NS, name, {"paused": True})
        eventually(lambda: (t := compliance.tenant(name)) and t.paused, "compliance to pause the tenant")
        wait_tenant(kube, name, lambda o: o["status"].get("phase") == "Paused", "phase Paused")

        # delete: the finalizer holds the object until compliance has deactivated the tenant
        kube.delete_tenant(NS, name)
        eventually(lambda: kube.tenant(NS, name) is None, "the Tenant to be gone")
        kept = compliance.tenant(name)
        assert kept is not None, "compliance keeps the tenant's data"
        assert not kept.active

    assert runner.exception is None
    assert runner.exit_code == 0
    seen = reasons(kube, name)
    assert {"Created", "Updated", "Paused", "Deactivated"} <= set(seen), seen
    # Secret values never reach status, events or the operator's output.
    everything = str(seen) + str(kube.events(NS)) + runner.output
    assert "meta-app-secret" not in everything
    assert "rotated-app-secret" not in everything


@pytest.mark.usefixtures("operator_env")
def test_bad_spec_and_missing_secret_are_reported(kube: KubeEmulator, compliance: Compliance) -> None:
    bad = f"bad-{uuid.uuid4().hex[:8]}"
    waiting = f"wait-{uuid.uuid4().hex[:8]}"
    with run_operator() as runner:
        # The CRD would refuse this; an older CRD or a bypassed one must not crash the operator.
        kube.create_tenant(NS, bad, {"limits": {"callsPerMinute": -3}})
        obj = wait_tenant(kube, bad, lambda o: o.get("status", {}).get("phase") == "Degraded", "InvalidSpec")
        reconciled = condition(obj, "Reconciled")
        assert reconciled is not None
        assert (reconciled["status"], reconciled["reason"]) == ("False", "InvalidSpec")
        assert "callsPerMinute" in reconciled["message"]

        kube.create_tenant(NS, waiting, {"sources": {"hubspot": {"secretRef": {"name": "later"}}}})
        obj = wait_tenant(kube, waiting, lambda o: condition(o, "Reconciled"), "SecretMissing")
        reconciled = condition(obj, "Reconciled")
        assert reconciled is not None
        assert reconciled["reason"] == "SecretMissing"
        assert compliance.tenant(waiting) is None
        # The Secret appears: the timer applies the tenant without waiting for the handler's retry.
        kube.create_secret(NS, "later", b64({"clientSecret": "hs"}))
        eventually(lambda: compliance.tenant(waiting), "the tenant once its Secret exists")
        wait_tenant(kube, waiting, lambda o: o["status"].get("phase") == "Active", "Active")
    assert compliance.tenant(bad) is None
    assert runner.exception is None
    assert "InvalidSpec" in reasons(kube, bad)
    assert "SecretMissing" in reasons(kube, waiting)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_compliance_down_then_up(
    monkeypatch: pytest.MonkeyPatch,
    kube: KubeEmulator,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Compliance unreachable: the Tenant is Degraded and retried (TemporaryError), then applied
    once compliance answers on that address."""
    addr = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("LEADFLOW_COMPLIANCE_ADDR", addr)
    monkeypatch.setenv("LEADFLOW_OPERATOR_KUBE_SERVER", kube.url)
    monkeypatch.setenv("LEADFLOW_OPERATOR_NAMESPACE", NS)
    monkeypatch.setenv("LEADFLOW_RPC_TIMEOUT_SECONDS", "2")
    monkeypatch.setattr(handlers, "RETRY_DELAY", 1.0)
    name = f"late-{uuid.uuid4().hex[:8]}"
    late = ServiceProcess(
        "compliance-late",
        python_module("leadflow_compliance"),
        service_env(database_url, redis_url, redis_prefix, {"LEADFLOW_COMPLIANCE_ADDR": addr}),
        tmp_path_factory.mktemp("late-compliance"),
    )
    try:
        with run_operator() as runner:
            kube.create_tenant(NS, name, {"paused": True})
            obj = wait_tenant(
                kube, name, lambda o: o.get("status", {}).get("phase") == "Degraded", "Degraded"
            )
            ready = condition(obj, "Ready")
            assert ready is not None
            assert (ready["status"], ready["reason"]) == ("False", "ComplianceUnavailable")
            assert "ComplianceUnavailable" in reasons(kube, name)

            try:
                late.start(timeout=120)
            except BaseException:
                late.kill()
                raise
            obj = wait_tenant(kube, name, lambda o: o["status"].get("phase") == "Paused", "applied after all")
            ready = condition(obj, "Ready")
            assert ready is not None
            assert ready["status"] == "True"
            compliance = Compliance(late.addr)
            try:
                held = compliance.tenant(name)
                assert held is not None
                assert held.paused
            finally:
                compliance.close()
        assert runner.exception is None
    finally:
        assert late.stop() in (0, None), late.tail()

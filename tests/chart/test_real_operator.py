"""The kopf operator as a real process against the real API server and a real compliance:
a Tenant's whole lifecycle, pause and resume, the Secret watch, the first API key, same-name
Tenants in two namespaces, and a deliberate deactivation that the periodic re-apply keeps."""

from __future__ import annotations

import base64
import json
import socket
import tempfile
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import yaml

from leadflow.v1 import tenant_pb2, tenants_pb2, tenants_pb2_grpc
from leadflow_core.grpc_clients import channel
from leadflow_core.testing import ServiceProcess, python_module, wait_for
from tests.k8s_apiserver.cluster import ApiServer

T = TypeVar("T")
Obj = dict[str, Any]
USAGE_INTERVAL = "2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (http, loopback)
            return bool(resp.status == 200)
    except OSError:
        return False


class Compliance:
    def __init__(self, addr: str) -> None:
        self._channel = channel(addr, default_timeout=30)
        self.stub = tenants_pb2_grpc.TenantAdminServiceStub(self._channel)

    def tenant(self, name: str) -> tenant_pb2.Tenant | None:
        try:
            return self.stub.GetTenant(tenants_pb2.GetTenantRequest(name=name)).tenant
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def source_secrets(self, name: str, source: str) -> dict[str, str]:
        resp = self.stub.GetSourceConfig(tenants_pb2.GetSourceConfigRequest(tenant=name, source=source))
        return dict(resp.config.secrets)

    def close(self) -> None:
        self._channel.close()


@pytest.fixture(scope="module")
def compliance(compliance_process: ServiceProcess) -> Iterator[Compliance]:
    client = Compliance(compliance_process.addr)
    yield client
    client.close()


@pytest.fixture(scope="module")
def operator(apiserver: ApiServer, compliance_process: ServiceProcess) -> Iterator[ServiceProcess]:
    """`python -m leadflow_operator`, cluster-wide, as the chart runs it but for every namespace."""
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    env = {
        "LEADFLOW_COMPLIANCE_ADDR": compliance_process.addr,
        "LEADFLOW_OPERATOR_KUBE_SERVER": apiserver.front_url,
        "LEADFLOW_OPERATOR_NAMESPACE": "",
        "LEADFLOW_OPERATOR_LIVENESS_ENDPOINT": liveness,
        "LEADFLOW_OPERATOR_USAGE_INTERVAL_SECONDS": USAGE_INTERVAL,
        "LEADFLOW_RPC_TIMEOUT_SECONDS": "10",
    }
    # Its log outside pytest's basetemp, which other pytest sessions on this machine may rotate away.
    with tempfile.TemporaryDirectory(prefix="leadflow-operator-") as workdir:
        proc = ServiceProcess("operator", python_module("leadflow_operator"), env, Path(workdir))
        proc.start(wait_port=False)
        try:
            wait_for(lambda: healthy(liveness), timeout=90, what="the operator's liveness endpoint")
            yield proc
        finally:
            code = proc.stop()
            assert code == 0, proc.tail()


def eventually(predicate: Callable[[], T | None], what: str, timeout: float = 90) -> T:
    return wait_for(predicate, timeout=timeout, interval=0.2, what=what)


def apply(server: ApiServer, *objs: Obj) -> None:
    server.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))


def namespace(server: ApiServer) -> str:
    name = f"op-{uuid.uuid4().hex[:6]}"
    apply(server, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def secret(ns: str, name: str, data: dict[str, str]) -> Obj:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "data": encoded,
    }


def tenant(ns: str, name: str, spec: Obj) -> Obj:
    meta = {"name": name, "namespace": ns}
    return {"apiVersion": "leadflow.dev/v1alpha1", "kind": "Tenant", "metadata": meta, "spec": spec}


def get(server: ApiServer, ns: str, name: str) -> Obj | None:
    proc = server.kubectl("get", "tenant", name, "-n", ns, "-o", "json", check=False)
    if proc.returncode != 0:
        return None
    obj: Obj = json.loads(proc.stdout)
    return obj


def wait_tenant(server: ApiServer, ns: str, name: str, pred: Callable[[Obj], object], what: str) -> Obj:
    def ready() -> Obj | None:
        obj = get(server, ns, name)
        return obj if obj is not None and pred(obj) else None

    return eventually(ready, what)


def delete(server: ApiServer, ns: str, name: str, operator: ServiceProcess) -> None:
    """Delete and wait for the finalizer to go; on failure, show what the operator did."""
    proc = server.kubectl("delete", "tenant", name, "-n", ns, "--wait=true", "--timeout=150s", check=False)
    assert proc.returncode == 0, f"{proc.stderr}\n--- operator log ---\n{operator.tail(80)}"


def condition(obj: Obj, type_: str) -> Obj | None:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return None


def events(server: ApiServer, ns: str, name: str) -> list[Obj]:
    listing = server.get_json(f"/api/v1/namespaces/{ns}/events")
    return [e for e in listing["items"] if e.get("involvedObject", {}).get("name") == name]


def reasons(server: ApiServer, ns: str, name: str) -> list[str]:
    return [e.get("reason", "") for e in events(server, ns, name)]


def phase(value: str) -> Callable[[Obj], bool]:
    return lambda o: o.get("status", {}).get("phase") == value


def test_tenant_lifecycle_on_a_real_api_server(
    apiserver: ApiServer, compliance: Compliance, operator: ServiceProcess
) -> None:
    ns = namespace(apiserver)
    name = f"acme-{uuid.uuid4().hex[:6]}"
    apply(apiserver, secret(ns, "acme-meta", {"appSecret": "meta-app-secret"}))
    spec = {
        "displayName": "ACME HVAC",
        "budget": {"dailyUsd": 100.00},  # unquoted: kubectl sends 100, compliance holds "100.00"
        "sources": {"meta": {"secretRef": {"name": "acme-meta", "key": "appSecret"}}},
    }
    apply(apiserver, tenant(ns, name, spec))
    held = eventually(lambda: compliance.tenant(name), "compliance to hold the tenant")
    assert (held.display_name, held.budget.daily_usd, held.active) == ("ACME HVAC", "100.00", True)
    obj = wait_tenant(apiserver, ns, name, phase("Active"), "phase Active")
    assert obj["status"]["observedGeneration"] == 1
    assert "leadflow.dev/deactivate" in obj["metadata"]["finalizers"]
    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["status"] == "True"

    # The first API key, in the Secret the status names; it authenticates with compliance.
    obj = wait_tenant(apiserver, ns, name, lambda o: o["status"].get("apiKeySecret"), "apiKeySecret")
    key_secret = apiserver.get_json(f"/api/v1/namespaces/{ns}/secrets/{obj['status']['apiKeySecret']}")
    api_key = base64.b64decode(key_secret["data"]["apiKey"]).decode()
    auth = compliance.stub.AuthenticateApiKey(tenants_pb2.AuthenticateApiKeyRequest(api_key=api_key))
    assert auth.tenant == name

    # Usage from the timer, shown in the printer columns.
    wait_tenant(apiserver, ns, name, lambda o: "usage" in o.get("status", {}), "usage")
    row = apiserver.kubectl("get", "tenant", name, "-n", ns, "--no-headers").stdout.split()
    assert row[:5] == [name, "false", "Active", "0", "0.00"]

    # Pause, then resume, end to end.
    apiserver.kubectl("patch", "tenant", name, "-n", ns, "--type=merge", "-p", '{"spec":{"paused":true}}')
    eventually(lambda: (t := compliance.tenant(name)) and t.paused, "compliance to pause the tenant")
    wait_tenant(apiserver, ns, name, phase("Paused"), "phase Paused")
    apiserver.kubectl("patch", "tenant", name, "-n", ns, "--type=merge", "-p", '{"spec":{"paused":false}}')
    eventually(lambda: (t := compliance.tenant(name)) and not t.paused, "compliance to resume the tenant")
    wait_tenant(apiserver, ns, name, phase("Active"), "phase Active again")

    # Delete: the finalizer holds the object until compliance deactivated the tenant.
    delete(apiserver, ns, name, operator)
    assert get(apiserver, ns, name) is None
    kept = compliance.tenant(name)
    assert kept is not None
    assert not kept.active
    seen = reasons(apiserver, ns, name)
    assert {"Created", "ApiKeyCreated", "Paused", "Resumed", "Deactivated"} <= set(seen), seen
    everything = json.dumps(apiserver.get_json(f"/api/v1/namespaces/{ns}/events"))
    assert "meta-app-secret" not in everything
    assert api_key not in everything


def test_secret_watch_rotation_and_missing_secret(
    apiserver: ApiServer, compliance: Compliance, operator: ServiceProcess
) -> None:
    ns = namespace(apiserver)
    name = f"sec-{uuid.uuid4().hex[:6]}"
    # The Secret does not exist yet: a condition, not a crash loop.
    apply(apiserver, tenant(ns, name, {"sources": {"hubspot": {"secretRef": {"name": "hs"}}}}))
    obj = wait_tenant(apiserver, ns, name, lambda o: condition(o, "Reconciled"), "SecretMissing")
    reconciled = condition(obj, "Reconciled")
    assert reconciled is not None
    assert (reconciled["status"], reconciled["reason"]) == ("False", "SecretMissing")
    assert compliance.tenant(name) is None
    apply(apiserver, secret(ns, "hs", {"clientSecret": "first-value"}))
    eventually(lambda: compliance.tenant(name), "the tenant once its Secret exists")
    eventually(
        lambda: compliance.source_secrets(name, "hubspot").get("client_secret") == "first-value", "secret"
    )

    apply(apiserver, secret(ns, "hs", {"clientSecret": "rotated-value"}))
    eventually(
        lambda: compliance.source_secrets(name, "hubspot").get("client_secret") == "rotated-value",
        "the rotated value in compliance",
    )
    # The Secret watch did it (its Event says so), not only the timer.
    eventually(
        lambda: any(
            "a Secret it refers to changed" in e.get("message", "") for e in events(apiserver, ns, name)
        ),
        "the Secret watch's event",
    )
    assert "first-value" not in operator.logs()
    assert "rotated-value" not in operator.logs()
    delete(apiserver, ns, name, operator)


def test_same_name_in_two_namespaces(
    apiserver: ApiServer, compliance: Compliance, operator: ServiceProcess
) -> None:
    first, second = namespace(apiserver), namespace(apiserver)
    name = f"twin-{uuid.uuid4().hex[:6]}"
    apply(apiserver, tenant(first, name, {"displayName": "First"}))
    wait_tenant(apiserver, first, name, phase("Active"), "the first Tenant Active")
    apply(apiserver, tenant(second, name, {"displayName": "Second", "paused": True}))
    obj = wait_tenant(apiserver, second, name, lambda o: condition(o, "NameConflict"), "NameConflict")
    conflict = condition(obj, "NameConflict")
    assert conflict is not None
    assert conflict["status"] == "True"
    assert first in conflict["message"]
    assert obj["status"]["phase"] == "Degraded"
    eventually(lambda: "NameConflict" in reasons(apiserver, second, name), "the NameConflict event")
    # Several timer ticks later compliance still holds the first namespace's tenant, untouched.
    wait_for(
        lambda: False if (t := compliance.tenant(name)) is None else t.display_name == "First", timeout=60
    )
    held = compliance.tenant(name)
    assert held is not None
    assert (held.display_name, held.paused, held.active) == ("First", False, True)

    # Deleting the refused one never touches the holder's tenant.
    delete(apiserver, second, name, operator)
    held = compliance.tenant(name)
    assert held is not None
    assert held.active
    assert "Released" in reasons(apiserver, second, name)
    first_obj = get(apiserver, first, name)
    assert first_obj is not None
    assert first_obj["status"]["phase"] == "Active"

    # Once the holder is gone, a Tenant waiting for the name takes it over.
    apply(apiserver, tenant(second, name, {"displayName": "Second"}))
    wait_tenant(apiserver, second, name, lambda o: condition(o, "NameConflict"), "NameConflict again")
    delete(apiserver, first, name, operator)
    eventually(
        lambda: (t := compliance.tenant(name)) and t.active and t.display_name == "Second",
        "the second namespace to take the name over",
    )
    obj = wait_tenant(apiserver, second, name, phase("Active"), "the second Tenant Active")
    conflict = condition(obj, "NameConflict")
    assert conflict is not None
    assert conflict["status"] == "False"
    delete(apiserver, second, name, operator)


def test_a_deliberate_deactivation_stays(
    apiserver: ApiServer, compliance: Compliance, operator: ServiceProcess
) -> None:
    ns = namespace(apiserver)
    name = f"off-{uuid.uuid4().hex[:6]}"
    apply(apiserver, tenant(ns, name, {"displayName": "Off"}))
    wait_tenant(apiserver, ns, name, phase("Active"), "Active")
    compliance.stub.DeactivateTenant(tenants_pb2.DeactivateTenantRequest(name=name))
    # The timer (every 2 s) sees it and reports it, and does not reactivate it.
    obj = wait_tenant(apiserver, ns, name, phase("Deactivated"), "phase Deactivated")
    reconciled = condition(obj, "Reconciled")
    assert reconciled is not None
    assert reconciled["reason"] == "DeactivatedInCompliance"
    ticks_before = operator.logs().count("report_usage")
    wait_for(
        lambda: operator.logs().count("report_usage") >= ticks_before + 2, timeout=30, what="two timer ticks"
    )
    held = compliance.tenant(name)
    assert held is not None
    assert not held.active
    # A change of the spec is a request: it applies the tenant again.
    apiserver.kubectl(
        "patch", "tenant", name, "-n", ns, "--type=merge", "-p", '{"spec":{"displayName":"On"}}'
    )
    eventually(lambda: (t := compliance.tenant(name)) and t.active, "reactivated by the spec change")
    wait_tenant(apiserver, ns, name, phase("Active"), "Active again")
    delete(apiserver, ns, name, operator)


def test_operator_refuses_a_compliance_address_without_a_port(tmp_path: Path) -> None:
    proc = ServiceProcess(
        "operator-noport",
        python_module("leadflow_operator"),
        {"LEADFLOW_COMPLIANCE_ADDR": "compliance", "LEADFLOW_OPERATOR_KUBE_SERVER": "http://127.0.0.1:9"},
        tmp_path,
    )
    proc.start(wait_port=False)
    assert proc.proc is not None
    code = proc.proc.wait(60)
    assert code != 0
    assert "LEADFLOW_COMPLIANCE_ADDR='compliance' has no port" in proc.logs()

"""A real Prometheus (the Debian `prometheus` binary) scrapes the running mesh: every dashboard
query returns data and every alert expression evaluates over the series the services export.

Without the binary this skips locally and fails under CI (`apt-get install -y prometheus`).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import yaml

from leadflow.v1 import admin_pb2, admin_pb2_grpc, dispatcher_pb2
from leadflow_core.testing import wait_for
from ops import grafana_dashboards
from tests.chart.test_alerts import RULES
from tests.e2e.mesh import Mesh, running_mesh
from tests.e2e.scenario import clock_env, lead_body, tenant_secrets, tenant_spec

pytestmark = pytest.mark.e2e

TENANT = "prom-acme"
# Queries that need something this mesh does not run or that a healthy run never produces.
NO_DATA_EXPECTED = {
    "leadflow_operator_reconciles_total": "no operator runs in this mesh",
    "leadflow_operator_reconcile_errors_total": "no operator runs in this mesh",
    "leadflow_worker_failures_total": "no job fails in a healthy run",
}


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else ""
    )
    if not found:
        message = "prometheus not found: apt-get install -y prometheus (Debian package `prometheus`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    # Prometheus takes no port 0; ask the kernel for a free one just before starting it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mesh(database_url: str, redis_url: str, redis_prefix: str) -> Iterator[Mesh]:
    with (
        tempfile.TemporaryDirectory(prefix="leadflow-prom-") as tmp,
        running_mesh(database_url, redis_url, redis_prefix + "prom:", Path(tmp), clock_env()) as m,
    ):
        m.apply_tenant(TENANT, tenant_spec(), tenant_secrets())
        yield m


@pytest.fixture(scope="module")
def prometheus(mesh: Mesh) -> Iterator[str]:
    binary = prometheus_binary()
    workdir = Path(tempfile.mkdtemp(prefix="leadflow-prometheus-"))
    targets = [
        {"targets": [mesh.metrics_url(name).removeprefix("http://")], "labels": {"component": name}}
        for name in ("gateway", "compliance", "dispatcher", "workers")
    ]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "leadflow", "static_configs": targets}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "prometheus.log").open("w"),
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None and pytest.fail((workdir / "prometheus.log").read_text()[-2000:])

    try:
        wait_for(ready, timeout=60, what="prometheus to be ready")
        yield base
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(workdir, ignore_errors=True)


def query(base: str, expr: str) -> list[dict[str, object]]:
    reply = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert reply["status"] == "success", (expr, reply)
    result: list[dict[str, object]] = reply["data"]["result"]
    return result


def exempt(expr: str) -> bool:
    return any(metric in expr for metric in NO_DATA_EXPECTED)


def test_every_dashboard_query_and_alert_has_data(mesh: Mesh, prometheus: str) -> None:
    # Traffic that touches every panel: leads (one without consent, one duplicate), a refused
    # key, a paused queue, a dead letter, and time for the dial and its status to complete.
    key = mesh.api_keys[TENANT]
    headers = {"Authorization": f"Bearer {key}"}
    first = httpx.post(
        f"{mesh.gateway_url}/v1/leads", json=lead_body(0, tag="prom"), headers=headers, timeout=30
    )
    assert first.status_code == 202, first.text
    httpx.post(f"{mesh.gateway_url}/v1/leads", json=lead_body(0, tag="prom"), headers=headers, timeout=30)
    httpx.post(
        f"{mesh.gateway_url}/v1/leads",
        json=lead_body(1, tag="prom", consent=False),
        headers=headers,
        timeout=30,
    )
    # A well-formed key compliance does not know: refused (401).
    unknown = {"Authorization": f"Bearer {key[:-6]}zzzzzz"}
    refused = httpx.post(f"{mesh.gateway_url}/v1/leads", json=lead_body(2), headers=unknown, timeout=30)
    assert refused.status_code == 401
    # A lead nobody stored: NOT_FOUND, a non-OK gRPC code for the errors panel.
    with pytest.raises(grpc.RpcError) as missing:
        mesh.dispatcher().GetLead(dispatcher_pb2.GetLeadRequest(tenant=TENANT, lead_id="0" * 32))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    admin = admin_pb2_grpc.AdminServiceStub(mesh._channel("dispatcher"))
    admin.PauseQueues(
        admin_pb2.PauseQueuesRequest(queue="call_status", reason="prometheus test"),
        metadata=(("x-leadflow-actor", "test"),),
    )
    mesh.dispatcher().RecordDeadLetter(
        dispatcher_pb2.DeadLetter(tenant=TENANT, queue="enrich", lead_id=first.json()["lead_id"])
    )
    wait_for(
        lambda: query(prometheus, 'leadflow_worker_jobs_total{queue="enrich",outcome="ok"}'),
        timeout=90,
        what="worker jobs scraped",
    )
    wait_for(lambda: query(prometheus, "leadflow_queue_paused"), timeout=30, what="the pause scraped")
    time.sleep(3)  # a few more scrapes, so rate() has two samples everywhere

    up = {r["metric"]["component"]: r["value"][1] for r in query(prometheus, "up")}  # type: ignore[index]
    assert up == {"gateway": "1", "compliance": "1", "dispatcher": "1", "workers": "1"}

    empty = [
        expr
        for expr in grafana_dashboards.every_query(TENANT)
        if not exempt(expr) and not query(prometheus, expr)
    ]
    assert empty == [], "dashboard queries without data:\n" + "\n".join(empty)

    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            expr = str(rule["expr"])
            query(prometheus, expr)  # evaluates without error
            for metric in set(re.findall(r"\b(leadflow_[a-z_]+)", expr)):
                if metric in NO_DATA_EXPECTED or metric.startswith("leadflow_operator_"):
                    continue
                assert query(prometheus, metric), f"{rule['alert']}: no series for {metric}"

"""The chart's observability: metrics ports and worker probes, dashboards ConfigMaps for Grafana's
sidecar, the PrometheusRule, and the PodMonitor; dashboards generated from code are current and
every query they make is valid PromQL over metrics the services export."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ops import grafana_dashboards
from tests.chart.rendering import CHART_DIR, Obj, load_values, name, objects, of_kind
from tests.chart.test_alerts import RULES, promtool


def prod() -> list[Obj]:
    return objects(load_values(CHART_DIR / "ci" / "production-values.yaml"))


def container(dep: Obj) -> dict[str, Any]:
    c: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
    return c


def env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in c.get("env", [])}


def test_every_component_serves_metrics_on_a_port_of_its_own() -> None:
    deps = of_kind(objects({}), "Deployment")
    expected = {
        "gateway": "LEADFLOW_GATEWAY_METRICS_ADDR",
        "compliance": "LEADFLOW_COMPLIANCE_METRICS_ADDR",
        "dispatcher": "LEADFLOW_DISPATCHER_METRICS_ADDR",
        "worker-dial-urgent": "LEADFLOW_WORKER_METRICS_ADDR",
        "worker-background": "LEADFLOW_WORKER_METRICS_ADDR",
        "operator": "LEADFLOW_OPERATOR_METRICS_ADDR",
    }
    for component, variable in expected.items():
        c = container(deps[name(component)])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["metrics"] == 9102, component
        assert env(c)[variable] == "0.0.0.0:9102", component
    # The gateway's Service (the public one) never carries the metrics port.
    service = of_kind(objects({}), "Service")[name("gateway")]
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]


def test_workers_have_liveness_and_readiness_probes_on_the_metrics_port() -> None:
    for dep_name, dep in of_kind(objects({}), "Deployment").items():
        if "worker-" not in dep_name:
            continue
        c = container(dep)
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert c["startupProbe"]["httpGet"]["port"] == "metrics"


def test_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    maps = {n: m for n, m in of_kind(prod(), "ConfigMap").items() if "dashboard" in n}
    assert set(maps) == {
        name("dashboard-overview"),
        name("dashboard-tenant"),
        name("dashboard-tenant-acme-hvac"),
        name("dashboard-tenant-beta"),
    }
    for cm in maps.values():
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == "leadflow"
    overview = json.loads(maps[name("dashboard-overview")]["data"]["leadflow-overview.json"])
    assert overview == grafana_dashboards.overview()
    acme = json.loads(maps[name("dashboard-tenant-acme-hvac")]["data"]["leadflow-tenant-acme-hvac.json"])
    assert acme["title"] == "Leadflow tenant acme-hvac"
    picked = next(v for v in acme["templating"]["list"] if v["name"] == "tenant")
    assert picked["current"]["value"] == "acme-hvac"
    assert acme["uid"] != overview["uid"]


def test_dashboards_can_go_to_grafanas_namespace() -> None:
    maps = of_kind(objects({"dashboards": {"namespace": "monitoring"}}), "ConfigMap")
    assert {m["metadata"]["namespace"] for n, m in maps.items() if "dashboard" in n} == {"monitoring"}


def test_dashboards_can_be_turned_off() -> None:
    maps = of_kind(objects({"dashboards": {"enabled": False}}), "ConfigMap")
    assert not [n for n in maps if "dashboard" in n]


def test_committed_dashboards_are_what_the_code_generates() -> None:
    for file_name, text in grafana_dashboards.render().items():
        assert (CHART_DIR / "dashboards" / file_name).read_text() == text, (
            f"{file_name} is stale: run .venv/bin/python -m ops.grafana_dashboards"
        )


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (it checks syntax, not data)."""
    rules = {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [
                    {"record": f"leadflow:dashboard_query_{i}", "expr": expr}
                    for i, expr in enumerate(grafana_dashboards.every_query())
                ],
            }
        ]
    }
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    out = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_prometheus_rule_carries_the_tested_rule_file() -> None:
    assert of_kind(objects({}), "PrometheusRule") == {}
    rule = of_kind(prod(), "PrometheusRule")[name("alerts")]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_pod_monitor_scrapes_every_metrics_port() -> None:
    assert of_kind(objects({}), "PodMonitor") == {}
    monitor = of_kind(prod(), "PodMonitor")[name("metrics")]
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]

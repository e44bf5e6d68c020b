"""Grafana dashboards, generated from code into charts/leadflow/dashboards/*.json.

    .venv/bin/python -m ops.grafana_dashboards          # rewrite the JSON files
    .venv/bin/python -m ops.grafana_dashboards --check  # fail when they are stale

The chart wraps each file in a ConfigMap with Grafana's sidecar label (templates/dashboards.yaml):
one overview, and one tenant dashboard (a `tenant` variable; `dashboards.tenants` in the values
adds one copy per named tenant with that tenant preselected). Every query uses only metrics the
services export (tests/chart/test_dashboards.py checks them against promtool and a live mesh).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

OUT = Path(__file__).resolve().parents[1] / "charts/leadflow/dashboards"
DATASOURCE = "${datasource}"


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"


OVERVIEW: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Intake",
        (
            Panel(
                "Requests by source and status (/s)",
                (
                    (
                        "sum by (source, status) (rate(leadflow_gateway_requests_total[5m]))",
                        "{{source}} {{status}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Answer latency p99 by source",
                (
                    (
                        "histogram_quantile(0.99, sum by (le, source) "
                        "(rate(leadflow_gateway_request_seconds_bucket[5m])))",
                        "{{source}}",
                    ),
                ),
                "s",
            ),
            Panel(
                "Leads handed on (/s)",
                (
                    (
                        "sum by (source, outcome) (rate(leadflow_gateway_leads_total[5m]))",
                        "{{source}} {{outcome}}",
                    ),
                ),
                "reqps",
            ),
        ),
    ),
    (
        "Decisions and hops",
        (
            Panel(
                "Compliance decisions by action (/s)",
                (("sum by (action) (rate(leadflow_compliance_decisions_total[5m]))", "{{action}}"),),
                "reqps",
            ),
            Panel(
                "Top rules shaping decisions (/s)",
                (
                    (
                        "topk(10, sum by (rule) (rate(leadflow_compliance_decision_reasons_total[5m])))",
                        "{{rule}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "gRPC hop latency p99",
                (
                    (
                        "histogram_quantile(0.99, sum by (le, service, method) "
                        "(rate(leadflow_grpc_server_handling_seconds_bucket[5m])))",
                        "{{service}}.{{method}}",
                    ),
                ),
                "s",
            ),
            Panel(
                "gRPC errors (/s)",
                (
                    (
                        "sum by (service, method, code) "
                        '(rate(leadflow_grpc_server_handled_total{code!="OK"}[5m]))',
                        "{{service}}.{{method}} {{code}}",
                    ),
                ),
                "reqps",
            ),
        ),
    ),
    (
        "Queues",
        (
            Panel("Depth (HPA input)", (("max by (queue) (leadflow_queue_depth)", "{{queue}}"),)),
            Panel(
                "Oldest message age",
                (("max by (queue) (leadflow_queue_oldest_age_seconds)", "{{queue}}"),),
                "s",
            ),
            Panel(
                "In flight and delayed",
                (
                    ("max by (queue) (leadflow_queue_in_flight)", "{{queue}} in flight"),
                    ("max by (queue) (leadflow_queue_delayed)", "{{queue}} delayed"),
                ),
            ),
            Panel(
                "Outbox and dead letters",
                (
                    ("max by (queue) (leadflow_queue_outbox_pending)", "{{queue}} outbox"),
                    ("max by (queue) (leadflow_queue_dead_letters_open)", "{{queue}} dead"),
                ),
            ),
            Panel("Paused queues", (("max by (queue) (leadflow_queue_paused)", "{{queue}}"),), kind="stat"),
            Panel("Live worker processes", (("max(leadflow_workers_live)", "workers"),), kind="stat"),
        ),
    ),
    (
        "Workers and providers",
        (
            Panel(
                "Jobs by outcome (/s)",
                (
                    (
                        "sum by (queue, outcome) (rate(leadflow_worker_jobs_total[5m]))",
                        "{{queue}} {{outcome}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Job duration p95",
                (
                    (
                        "histogram_quantile(0.95, sum by (le, queue) "
                        "(rate(leadflow_worker_job_seconds_bucket[5m])))",
                        "{{queue}}",
                    ),
                ),
                "s",
            ),
            Panel(
                "Failures by class and provider (/s)",
                (
                    (
                        "sum by (error_class, provider) (rate(leadflow_worker_failures_total[5m]))",
                        "{{provider}} {{error_class}}",
                    ),
                ),
                "reqps",
            ),
        ),
    ),
    (
        "Tenants and operator",
        (
            Panel(
                "Budget used today",
                (("max by (tenant) (leadflow_tenant_budget_used_ratio)", "{{tenant}}"),),
                "percentunit",
            ),
            Panel("Calls in progress", (("sum by (tenant) (leadflow_tenant_active_calls)", "{{tenant}}"),)),
            Panel(
                "Compliance reachable",
                (('min(leadflow_dependency_up{dependency="compliance"})', "up"),),
                kind="stat",
            ),
            Panel(
                "Operator reconciles (/s)",
                (
                    ("sum by (result) (rate(leadflow_operator_reconciles_total[5m]))", "{{result}}"),
                    (
                        "sum by (reason) (rate(leadflow_operator_reconcile_errors_total[5m]))",
                        "error {{reason}}",
                    ),
                ),
                "reqps",
            ),
        ),
    ),
)

TENANT: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Calls and budget",
        (
            Panel(
                "Budget used today",
                (('max(leadflow_tenant_budget_used_ratio{tenant="$tenant"})', "used"),),
                "percentunit",
                "stat",
            ),
            Panel(
                "Spend vs budget (USD)",
                (
                    ('max(leadflow_tenant_spend_today_usd{tenant="$tenant"})', "spend"),
                    ('max(leadflow_tenant_budget_daily_usd{tenant="$tenant"})', "budget"),
                ),
                "currencyUSD",
            ),
            Panel(
                "Calls per minute vs limit",
                (
                    ('max(leadflow_tenant_calls_last_minute{tenant="$tenant"})', "last minute"),
                    ('max(leadflow_tenant_calls_per_minute{tenant="$tenant"})', "limit"),
                ),
            ),
            Panel(
                "Calls today and in progress",
                (
                    ('max(leadflow_tenant_calls_today{tenant="$tenant"})', "today"),
                    ('max(leadflow_tenant_active_calls{tenant="$tenant"})', "in progress"),
                ),
            ),
            Panel("Paused", (('max(leadflow_tenant_paused{tenant="$tenant"})', "paused"),), kind="stat"),
        ),
    ),
    (
        "Decisions",
        (
            Panel(
                "Decisions by action (/s)",
                (
                    (
                        'sum by (action) (rate(leadflow_compliance_decisions_total{tenant="$tenant"}[5m]))',
                        "{{action}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Decisions by RPC (/s)",
                (
                    (
                        'sum by (method) (rate(leadflow_compliance_decisions_total{tenant="$tenant"}[5m]))',
                        "{{method}}",
                    ),
                ),
                "reqps",
            ),
        ),
    ),
)


def _panel(p: Panel, x: int, y: int, width: int) -> Any:
    targets = [
        g.Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + i), datasource=DATASOURCE)
        for i, (expr, legend) in enumerate(p.exprs)
    ]
    pos = g.GridPos(h=7 if p.kind == "stat" else 8, w=width, x=x, y=y)
    if p.kind == "stat":
        return g.Stat(title=p.title, targets=targets, gridPos=pos, dataSource=DATASOURCE, format=p.unit)
    return g.TimeSeries(title=p.title, targets=targets, gridPos=pos, dataSource=DATASOURCE, unit=p.unit)


def _panels(rows: tuple[tuple[str, tuple[Panel, ...]], ...]) -> list[Any]:
    out: list[Any] = []
    y = 0
    for title, panels in rows:
        out.append(g.RowPanel(title=title, gridPos=g.GridPos(h=1, w=24, x=0, y=y)))
        y += 1
        per_row = 3 if len(panels) % 3 == 0 or len(panels) > 4 else max(1, len(panels))
        width = 24 // per_row
        for i, panel in enumerate(panels):
            out.append(_panel(panel, (i % per_row) * width, y + (i // per_row) * 8, width))
        y += ((len(panels) + per_row - 1) // per_row) * 8
    return out


def _datasource_variable() -> Any:
    return g.Template(
        name="datasource", query="prometheus", type="datasource", label="Data source", default=""
    )


def overview() -> dict[str, Any]:
    dash = g.Dashboard(
        title="Leadflow overview",
        uid="leadflow-overview",
        tags=["leadflow"],
        timezone="utc",
        refresh="30s",
        time=g.Time("now-6h", "now"),
        panels=_panels(OVERVIEW),
        templating=g.Templating(list=[_datasource_variable()]),
    ).auto_panel_ids()
    return _to_json(dash)


def tenant(preset: str = "") -> dict[str, Any]:
    variable = g.Template(
        name="tenant",
        label="Tenant",
        query="label_values(leadflow_tenant_budget_used_ratio, tenant)",
        dataSource=DATASOURCE,
        default=preset or None,
        refresh=2,
    )
    dash = g.Dashboard(
        title=f"Leadflow tenant {preset}" if preset else "Leadflow tenant",
        uid=f"leadflow-tenant-{preset}"[:40] if preset else "leadflow-tenant",
        tags=["leadflow", "tenant"],
        timezone="utc",
        refresh="30s",
        time=g.Time("now-24h", "now"),
        panels=_panels(TENANT),
        templating=g.Templating(list=[_datasource_variable(), variable]),
    ).auto_panel_ids()
    return _to_json(dash)


def _to_json(dash: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(dash.to_json_data(), cls=DashboardEncoder))
    return data


def every_query(tenant_name: str = "acme") -> list[str]:
    """Every PromQL expression of every dashboard ($tenant filled in), for checking."""
    return [
        expr.replace("$tenant", tenant_name)
        for _, panels in (*OVERVIEW, *TENANT)
        for p in panels
        for expr, _ in p.exprs
    ]


def render() -> dict[str, str]:
    return {
        "overview.json": json.dumps(overview(), indent=2, sort_keys=True) + "\n",
        "tenant.json": json.dumps(tenant(), indent=2, sort_keys=True) + "\n",
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail when the committed JSON is stale")
    args = parser.parse_args()
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("stale dashboards (run python -m ops.grafana_dashboards): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The worker path's cost per lead stays within its budget, so a regression fails CI.

Real processes (compliance, dispatcher, gateway, workers) on this run's PostgreSQL database and
a private redis-server; each process counts its SQL statements, commits, gRPC calls and Redis
round trips (`leadflow_core.cost_counters`). A backlog of leads is stored with the workers
stopped; then the workers take it from stored to dialed (enrich -> crm_sync -> dial through the
local scorer, the local CRM and the dial simulator) and the counts of every process are divided
by the leads. Periodic work paid per second whatever the load (relay passes, idle queue polls)
is counted apart; the local CRM's and simulator's own statements stand in for outside SaaS and
are counted apart too. No timing is asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.worker_path import measure_costs

pytestmark = pytest.mark.e2e

LEADS = 120
# Issue 12's budget per lead, stored -> dialed.
MAX_SQL = 15
MAX_COMMITS = 3
MAX_GRPC = 4
MAX_REDIS = 10


def test_worker_path_stays_within_its_per_lead_budget(private_database_url: str, workdir: Path) -> None:
    costs = measure_costs(private_database_url, workdir, leads=LEADS)
    report = "\n".join(costs.lines())
    per_lead = costs.per_lead()
    # The whole path ran: every lead's three jobs reached the services.
    assert costs.grpc_by_method.get("/leadflow.v1.ComplianceService/ReserveCalls", 0) > 0, report
    assert costs.grpc_by_method.get("/leadflow.v1.DispatcherService/CompleteDials", 0) > 0, report
    assert costs.provider_sql >= 2 * LEADS, report  # one CRM write and one call per lead at least
    assert per_lead["sql"] <= MAX_SQL, report
    assert per_lead["commits"] <= MAX_COMMITS, report
    assert per_lead["grpc"] <= MAX_GRPC, report
    assert per_lead["redis"] <= MAX_REDIS, report

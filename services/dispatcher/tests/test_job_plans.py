"""A batch's done jobs are read by their leads, whatever PostgreSQL's statistics say.

A new tenant's first backlog fills tables whose statistics were taken while they were young
(autovacuum analyzes again only a minute or more later). There, with statistics that knew no
done job, reading a batch's done jobs walked the (state, lease) index over every done job of
the table: each call cost more as the table grew. The jobs' due and lease indexes are partial
now (pending and queued jobs only), so no index on state can be picked for done jobs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from leadflow_core.db import make_engine
from leadflow_core.timestamps import utcnow
from leadflow_dispatcher import worker_path_sql as sql
from leadflow_dispatcher.models import JobRow

KINDS = ("enrich", "crm_sync", "dial")
LEADS = 3000


@pytest.fixture
def engine(private_database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(private_database_url)
    yield engine
    engine.dispose()


def _jobs_done_after_statistics(engine: sa.Engine, tenant: str) -> list[str]:
    """LEADS leads' jobs analyzed while queued, then done (statistics say no job is done)."""
    now = utcnow()
    leads = [uuid.uuid4().hex for _ in range(LEADS)]
    rows = [
        {
            "id": uuid.uuid4().hex,
            "tenant": tenant,
            "lead_id": lead,
            "kind": kind,
            "attempt": 1,
            "queue": kind,
            "state": "queued",
            "due_at": now,
            "lease_until": now + timedelta(minutes=10),
            "updated_at": now,
        }
        for lead in leads
        for kind in KINDS
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(JobRow), rows)
    with engine.connect() as conn:
        conn.execute(sa.text("ANALYZE dispatcher_jobs"))
        conn.commit()
    with engine.begin() as conn:
        conn.execute(sa.update(JobRow).where(JobRow.tenant == tenant).values(state="done"))
    return leads


def _plan(engine: sa.Engine, statement: sa.TextClause, params: dict[str, Any]) -> dict[str, Any]:
    text = sa.text(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement.text}")
    with engine.connect() as conn:
        raw = conn.execute(text, params).scalar_one()
    plan: dict[str, Any] = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
    return plan


def _rows_filtered_out(node: dict[str, Any]) -> int:
    own = int(node.get("Rows Removed by Filter", 0)) + int(node.get("Rows Removed by Index Recheck", 0))
    return own + sum(_rows_filtered_out(child) for child in node.get("Plans", ()))


def test_a_batchs_done_jobs_are_read_by_their_leads_not_by_their_state(engine: sa.Engine) -> None:
    tenant = f"plan-{uuid.uuid4().hex[:8]}"
    leads = _jobs_done_after_statistics(engine, tenant)
    batch = leads[100:124]
    plan = _plan(engine, sql.DONE_JOBS, {"tenants": [tenant], "lead_ids": batch})
    assert plan["Actual Rows"] == len(batch) * len(KINDS)
    # The batch's own rows, not every done job (9,000): a state index looked perfect to a
    # planner whose statistics had no done job.
    assert _rows_filtered_out(plan) <= len(batch) * len(KINDS), plan

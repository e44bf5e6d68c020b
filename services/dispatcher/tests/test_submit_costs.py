"""What a SubmitLeads batch costs in SQL on a real PostgreSQL: its reads (duplicates, merges,
joins, person order, held work) are a few queries per batch, not per lead, so a batch of many
leads costs about what a batch of a few does. Counted with a SQLAlchemy cursor listener, in
process (the store the servicer calls), as `leadflow_core.cost_counters` counts for the bench:
an executemany is one statement per row (PostgreSQL runs each), a multi-row INSERT is one. The
ORM's executemany of the leads' and jobs' rows is the per-lead part that remains, on purpose:
psycopg pipelines it as one prepared statement, which measured cheaper in CPU than rendering a
multi-row VALUES list per batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.engine.interfaces import ExecuteStyle

from leadflow.v1 import decision_pb2, lead_pb2
from leadflow_dispatcher.batch_submit import ItemFailed, Limits, Submission, submit_many
from leadflow_dispatcher.persons import person_keys
from leadflow_dispatcher.policies import PolicyView
from leadflow_dispatcher.store import Store

from .conftest import make_lead

LIMITS = Limits(
    deployment_delays={"emergency": 0, "high": 0, "medium": 0, "low": 3600},
    request_id="req-costs",
    join_window_seconds=3600.0,
    horizon_seconds=600.0,
    lease_seconds=30.0,
)
# The lead's row and its jobs' (enrich, crm_sync, dial), written by the ORM's executemany.
ROWS_PER_LEAD = 4
# A batch of new people, besides those rows: the advisory locks; stored leads by sender ids,
# then by the merged ones' aliases; the people's leads; their orders' last places (the reads,
# `MAX_SELECTS_NEW_BATCH`); the timeline events (one multi-row INSERT). Reading per lead cost 4
# statements more per lead (484 for 60 leads, now 246).
MAX_SELECTS_NEW_BATCH = 5
MAX_STATEMENTS_NEW_BATCH = MAX_SELECTS_NEW_BATCH + 1
# Reads of a batch about people already stored: the locks, the two duplicate reads, the
# people's leads, the row locks of the leads a merge may change, their pending dials, their
# recent calls, the orders' last places and held work. Per lead: 343 for these 100 leads.
MAX_SELECTS_RETURNING_BATCH = 9


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Each statement PostgreSQL runs, by its first line (an executemany once per row)."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        batched = getattr(context, "execute_style", None) is ExecuteStyle.INSERTMANYVALUES
        seen.extend([statement] * (len(params) if many and params and not batched else 1))

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def submission(tenant: str, n: int, *, vendor: str = "", campaign: str = "spring") -> Submission:
    lead = make_lead(
        tenant,
        vendor or f"v-{uuid.uuid4().hex[:12]}",
        phone=f"+1212555{n:04d}",
        email=f"p{n}@example.com",
    )
    lead.campaign = campaign
    decision = decision_pb2.Decision(decision_id=uuid.uuid4().hex, action=decision_pb2.DIAL_ACTION_DIAL_NOW)
    return Submission(lead, decision, person_keys(lead, "costs-key"), PolicyView(), f"r-{n}")


def stored(results: list[Any]) -> list[Any]:
    assert not [r for r in results if isinstance(r, ItemFailed)], results
    return results


def report(seen: list[str], n: int) -> str:
    return f"{len(seen)} statements for {n} leads:\n" + "\n".join(s.split("\n")[0][:120] for s in seen)


@pytest.mark.parametrize("size", [5, 60])
def test_a_batch_of_new_people_costs_a_few_statements_whatever_its_size(
    engine: Engine, store: Store, size: int
) -> None:
    tenant = f"c-{uuid.uuid4().hex[:10]}"
    batch = [submission(tenant, n) for n in range(size)]
    with statements(engine) as seen:
        results = stored(submit_many(store, batch, LIMITS))
    assert [r.duplicate for r in results] == [False] * size
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= MAX_SELECTS_NEW_BATCH, report(selects, size)
    assert len(seen) <= MAX_STATEMENTS_NEW_BATCH + ROWS_PER_LEAD * size, report(seen, size)


def test_a_batch_about_stored_people_reads_in_a_few_queries(engine: Engine, store: Store) -> None:
    """Every read path at once: merges into stored leads (same person and campaign), joins of a
    stored lead's pending call (another campaign), redeliveries of stored and in-batch leads, and
    a person twice in the batch; the SELECTs do not grow with the batch."""
    tenant = f"c-{uuid.uuid4().hex[:10]}"
    people = 20
    first = stored(submit_many(store, [submission(tenant, n, vendor=f"a{n}") for n in range(people)], LIMITS))
    batch: list[Submission] = []
    for n in range(people):
        batch.append(submission(tenant, n, campaign="spring"))  # merges into the stored lead
        batch.append(submission(tenant, n, campaign="autumn"))  # joins its pending dial
        batch.append(submission(tenant, n, vendor=f"a{n}"))  # a redelivery of the stored lead
        batch.append(submission(tenant, n, vendor=f"b{n}", campaign="winter"))
        batch.append(submission(tenant, n, vendor=f"b{n}", campaign="winter"))  # in-batch duplicate
    with statements(engine) as seen:
        results = stored(submit_many(store, batch, LIMITS))
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= MAX_SELECTS_RETURNING_BATCH, report(selects, len(batch))
    for n in range(people):
        merged, joined, again, winter, winter_again = results[5 * n : 5 * n + 5]
        assert (merged.lead_id, merged.merged) == (first[n].lead_id, True)
        assert (joined.duplicate, joined.joined_lead_id) == (False, first[n].lead_id)
        assert (again.lead_id, again.duplicate, again.merged) == (first[n].lead_id, True, False)
        assert (winter.duplicate, winter.joined_lead_id) == (False, first[n].lead_id)
        assert (winter_again.lead_id, winter_again.duplicate) == (winter.lead_id, True)


def test_lead_without_person_or_campaign_costs_no_person_reads(engine: Engine, store: Store) -> None:
    tenant = f"c-{uuid.uuid4().hex[:10]}"
    batch = []
    for n in range(30):
        lead = lead_pb2.Lead(tenant=tenant, source=lead_pb2.SOURCE_API, vendor_lead_id=f"x{n}")
        decision = decision_pb2.Decision(action=decision_pb2.DIAL_ACTION_NEVER)
        batch.append(Submission(lead, decision, person_keys(lead, "costs-key"), PolicyView()))
    with statements(engine) as seen:
        stored(submit_many(store, batch, LIMITS))
    assert len(seen) <= MAX_STATEMENTS_NEW_BATCH + ROWS_PER_LEAD * len(batch), report(seen, len(batch))

"""A batch's reads, made once for the batch (`batch_reads`), answer every lead as the single-lead
path's queries do: random batches of repeat people, campaigns, sender ids, test leads and
decisions, after leads stored earlier, give the same answers and the same stored rows (order,
held work, joins, merges) as the same leads stored one by one with a query per read. Real
PostgreSQL, in process."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from leadflow.v1 import decision_pb2, lead_pb2
from leadflow_dispatcher.batch_submit import ItemFailed, Submission, submit_many
from leadflow_dispatcher.models import JobRow, LeadRow
from leadflow_dispatcher.person_order import SubmitResult
from leadflow_dispatcher.persons import person_keys
from leadflow_dispatcher.policies import PolicyView
from leadflow_dispatcher.store import Store

from .test_submit_costs import LIMITS

ACTIONS = (decision_pb2.DIAL_ACTION_DIAL_NOW, decision_pb2.DIAL_ACTION_NEVER, decision_pb2.DIAL_ACTION_DEFER)
Slot = tuple[int, int, int, int, int, bool, int]


def submission(tenant: str, slot: Slot) -> Submission:
    vendor, idem, phone, email, campaign, is_test, action = slot
    lead = lead_pb2.Lead(
        tenant=tenant,
        source=lead_pb2.SOURCE_API,
        vendor_lead_id=f"v{vendor}" if vendor else "",
        idempotency_key=f"k{idem}" if idem else "",
        urgency=lead_pb2.URGENCY_HIGH,
        campaign=("", "spring", "autumn")[campaign],
        is_test=is_test,
        contact=lead_pb2.Contact(
            first_name=f"n{vendor}{idem}",
            phone=lead_pb2.Phone(e164=f"+1212555010{phone}" if phone else ""),
            email=f"p{email}@example.com" if email else "",
        ),
    )
    decision = decision_pb2.Decision(decision_id=uuid.uuid4().hex, action=ACTIONS[action])
    if decision.action == decision_pb2.DIAL_ACTION_DEFER:
        decision.not_before.FromSeconds(4102444800)  # 2100: stays deferred
    return Submission(lead, decision, person_keys(lead, "reads-key"), PolicyView())


def one_by_one(store: Store, item: Submission) -> SubmitResult:
    return store.submit(
        item.lead,
        item.decision,
        item.keys,
        item.policy,
        LIMITS.deployment_delays,
        "r",
        LIMITS.join_window_seconds,
        LIMITS.horizon_seconds,
        LIMITS.lease_seconds,
    )


def views(results: list[SubmitResult], s: Session, tenant: str) -> list[tuple[Any, ...]]:
    """Each answer and its lead's stored state, lead ids replaced by the first answer naming them."""
    first: dict[str, int] = {}
    out: list[tuple[Any, ...]] = []
    for i, r in enumerate(results):
        ref = first.setdefault(r.lead_id, i)
        row = s.get(LeadRow, r.lead_id)
        assert row is not None
        jobs = s.execute(
            sa.select(JobRow.kind, JobRow.state, JobRow.order_seq).where(
                JobRow.tenant == tenant, JobRow.lead_id == r.lead_id
            )
        ).all()
        out.append(
            (
                ref,
                r.duplicate,
                r.merged,
                r.dial_state,
                first.get(r.joined_lead_id, -1) if r.joined_lead_id else None,
                sorted(spec.kind for spec, _ in r.jobs),
                row.order_seq,
                row.person_phone is not None,
                sorted((kind, state, seq) for kind, state, seq in jobs),
            )
        )
    return out


slot = st.tuples(
    st.integers(0, 3),  # vendor lead id (0: none)
    st.integers(0, 2),  # idempotency key (0: none)
    st.integers(0, 2),  # phone (0: none)
    st.integers(0, 2),  # email (0: none)
    st.integers(0, 2),  # campaign (0: none)
    st.booleans(),  # a vendor's test lead
    st.integers(0, 2),  # decision
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(earlier=st.lists(slot, max_size=4), batch=st.lists(slot, min_size=1, max_size=10))
# A lead merged in the batch; a later one with its sender id (another person) is its duplicate.
@example(earlier=[(1, 0, 1, 0, 1, False, 0)], batch=[(2, 0, 1, 0, 1, False, 0), (2, 0, 2, 0, 0, False, 0)])
# A merge gives the stored lead the newer phone; a later lead with that phone joins its call.
@example(earlier=[(1, 0, 1, 1, 1, False, 0)], batch=[(2, 0, 2, 1, 1, False, 0), (3, 0, 2, 0, 2, False, 0)])
def test_a_batch_answers_and_stores_as_one_by_one(
    store: Store, engine: Engine, earlier: list[Slot], batch: list[Slot]
) -> None:
    got: dict[str, list[SubmitResult]] = {}
    for tenant, batched in ((f"rb-{uuid.uuid4().hex[:10]}", True), (f"rs-{uuid.uuid4().hex[:10]}", False)):
        results = [one_by_one(store, submission(tenant, e)) for e in earlier]
        items = [submission(tenant, b) for b in batch]
        if batched:
            answers = submit_many(store, items, LIMITS)
            assert not [a for a in answers if isinstance(a, ItemFailed)]
            results += [a for a in answers if isinstance(a, SubmitResult)]
        else:
            results += [one_by_one(store, item) for item in items]
        got[tenant] = results
    with Session(engine) as s:
        batched_view, single_view = (views(results, s, tenant) for tenant, results in got.items())
    assert batched_view == single_view

"""`pending_inserts` writes new ORM objects with Core INSERTs: the same rows the ORM's flush
writes for the same objects (attributes, Python defaults, NULLs, JSON null, autoincrement keys
in the order the objects were added), changes to persistent rows still flushed, and the
objects not written twice at commit. Real PostgreSQL, in process."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from leadflow_dispatcher import batch_submit
from leadflow_dispatcher.batch_submit import ItemFailed, submit_many
from leadflow_dispatcher.models import Base, EventDeliveryRow, EventRow, JobRow, LeadRow, ReviewRow
from leadflow_dispatcher.pending_inserts import flush_pending_as_inserts
from leadflow_dispatcher.person_order import SubmitResult
from leadflow_dispatcher.persons import person_keys
from leadflow_dispatcher.policies import PolicyView
from leadflow_dispatcher.store import Store

from .conftest import dial_now, make_lead
from .test_submit_costs import LIMITS

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TABLES: tuple[type[Base], ...] = (LeadRow, EventRow, JobRow, ReviewRow, EventDeliveryRow)


def objects(tenant: str) -> list[Base]:
    """New rows of every kind the fast pass adds, with attributes set, left unset (Python
    defaults, NULL) and set to None (the default, or JSON null where the type stores None)."""
    lead = tenant + "-lead"
    return [
        LeadRow(
            id=lead,
            tenant=tenant,
            source="api",
            vendor_lead_id="v1",
            urgency="high",
            lead_pb=b"\x01\x02",
            decision_pb=b"",
            dial_state=2,
            dial_at=AT,
            version_at=AT,
            enrichment=None,  # JSON null (set to None), not SQL NULL
            received_at=AT,
            created_at=AT,
            order_seq=3,
            # unset: idempotency_key, person_*, joined_lead_id, ... (NULL); request_id ("")
        ),
        EventRow(tenant=tenant, lead_id=lead, kind="received", detail={"a": 1}, request_id="r", at=AT),
        EventRow(tenant=tenant, lead_id=lead, kind="decided", request_id=None, at=AT),  # {}, ""
        JobRow(
            id=tenant + "-j1",
            tenant=tenant,
            lead_id=lead,
            kind="enrich",
            queue="enrich",
            state="pending",
            due_at=AT,
            updated_at=AT,
            payload=None,  # JSON null, as the ORM writes it (a JSON column stores None)
            broker_queue=None,  # None on a column with a default: the default ("")
        ),
        EventRow(tenant=tenant, lead_id=lead, kind="dial_scheduled", detail=None, dedupe_key="d", at=AT),
        JobRow(
            id=tenant + "-j2",
            tenant=tenant,
            lead_id=lead,
            kind="dial",
            attempt=2,
            queue="dial.high",
            state="queued",
            due_at=AT,
            lease_until=AT + timedelta(seconds=30),
            enqueue_count=1,
            payload={"x": [1, 2]},
            updated_at=AT,
        ),
        ReviewRow(tenant=tenant, lead_id=lead, created_at=AT),  # state "open", reasons [], ...
        EventDeliveryRow(
            id=tenant + "-m1",
            tenant=tenant,
            endpoint="ep",
            event_type="lead.stored",
            lead_id=lead,
            payload={"type": "lead.stored"},
            state="pending",
            next_at=AT,
            created_at=AT,
        ),
    ]


def stored_rows(conn: sa.Connection, tenant: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of the tenant's rows in each table (JSON as text: JSON null and SQL NULL
    differ), the tenant's name taken out, autoincrement keys as their rank."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for model in TABLES:
        table = model.__table__
        assert isinstance(table, sa.Table)
        cols = [sa.cast(c, sa.Text) if isinstance(c.type, sa.JSON) else c for c in table.c]
        rows = conn.execute(
            sa.select(*cols).where(table.c.tenant == tenant).order_by(*table.primary_key)
        ).all()
        auto = table.autoincrement_column
        out[table.name] = [
            tuple(
                rank if auto is not None and c is auto else _untenant(v, tenant)
                for c, v in zip(table.c, row, strict=True)
            )
            for rank, row in enumerate(rows)
        ]
    return out


def _untenant(value: Any, tenant: str) -> Any:
    return value.replace(tenant, "T") if isinstance(value, str) else value


@pytest.fixture
def tenants(engine: Engine) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def tenant() -> str:
        made.append(f"pi-{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield tenant
    with engine.begin() as conn:
        for model in TABLES:
            table = model.__table__
            assert isinstance(table, sa.Table)
            conn.execute(sa.delete(table).where(table.c.tenant.in_(made)))


def test_core_inserts_write_what_the_orm_flush_writes(engine: Engine, tenants: Callable[[], str]) -> None:
    by_orm, by_core = tenants(), tenants()
    with Session(engine) as s, s.begin():
        s.add_all(objects(by_orm))
        s.flush()
    with Session(engine) as s, s.begin():
        added = objects(by_core)
        s.add_all(added)
        flush_pending_as_inserts(s)
        # Written by Core, not by the ORM: out of the session, autoincrement keys not read back.
        assert not s.new
        assert not [o for o in added if o in s]
        assert all(o.id is None for o in added if isinstance(o, EventRow))
    with engine.connect() as conn:
        orm, core = stored_rows(conn, by_orm), stored_rows(conn, by_core)
        ids = conn.scalars(
            sa.select(EventRow.id).where(EventRow.tenant == by_core).order_by(EventRow.id)
        ).all()
        kinds = conn.scalars(
            sa.select(EventRow.kind).where(EventRow.tenant == by_core).order_by(EventRow.id)
        ).all()
    assert core == orm
    assert all(orm[name] for name in orm)  # every table written
    # The database assigned the keys, in the order the events were added (the timeline's order).
    assert len(ids) == 3
    assert all(isinstance(i, int) for i in ids)
    assert kinds == ["received", "decided", "dial_scheduled"]


def test_changes_to_stored_rows_are_flushed_with_the_inserts(
    engine: Engine, tenants: Callable[[], str]
) -> None:
    tenant = tenants()
    lead_id = tenant + "-lead"
    with Session(engine) as s, s.begin():
        s.add_all(objects(tenant)[:1])
    with Session(engine) as s, s.begin():
        row = s.get(LeadRow, lead_id)
        assert row is not None
        row.dial_state, row.person_phone = 5, "ph"  # as a merge changes the stored lead
        s.add(EventRow(tenant=tenant, lead_id=lead_id, kind="merged", at=AT))
        s.add(
            JobRow(
                id=tenant + "-j9",
                tenant=tenant,
                lead_id=lead_id,
                kind="crm_sync",
                queue="crm_sync",
                state="pending",
                due_at=AT,
                updated_at=AT,
            )
        )
        flush_pending_as_inserts(s)
        assert not s.dirty
    with Session(engine) as s:
        row = s.get(LeadRow, lead_id)
        assert row is not None
        assert (row.dial_state, row.person_phone) == (5, "ph")
        assert s.scalars(sa.select(EventRow.kind).where(EventRow.tenant == tenant)).all() == ["merged"]
        job = s.get(JobRow, tenant + "-j9")
        assert job is not None
        assert (job.attempt, job.enqueue_count, job.payload) == (1, 0, {})


def test_the_batch_fast_pass_writes_its_new_rows_with_core_inserts(
    store: Store, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring: the fast pass flushes through the Core path, and the timeline and jobs of its
    leads are as the single-lead path writes them."""
    calls: list[int] = []

    def spy(s: Session) -> None:
        calls.append(len(s.new))
        flush_pending_as_inserts(s)

    monkeypatch.setattr(batch_submit, "flush_pending_as_inserts", spy)
    tenant = f"pb-{uuid.uuid4().hex[:10]}"
    items = [
        batch_submit.Submission(
            make_lead(tenant, f"v{n}", phone=f"+1305555{n:04d}"),
            dial_now(),
            person_keys(make_lead(tenant, f"v{n}", phone=f"+1305555{n:04d}"), "k"),
            PolicyView(),
        )
        for n in range(3)
    ]
    items.append(items[0])  # a redelivery: its duplicate_received event is new too
    results = submit_many(store, items, LIMITS)
    assert not [r for r in results if isinstance(r, ItemFailed)]
    assert calls
    assert calls[0] > 0
    single = store.submit(
        make_lead(tenant, "single", phone="+13055559999"),
        dial_now(),
        person_keys(make_lead(tenant, "single", phone="+13055559999"), "k"),
        PolicyView(),
        LIMITS.deployment_delays,
        "r",
        LIMITS.join_window_seconds,
        LIMITS.horizon_seconds,
        LIMITS.lease_seconds,
    )
    with Session(engine) as s:

        def timeline(lead_id: str) -> list[str]:
            return list(
                s.scalars(
                    sa.select(EventRow.kind)
                    .where(EventRow.tenant == tenant, EventRow.lead_id == lead_id)
                    .order_by(EventRow.id)
                )
            )

        def jobs(lead_id: str) -> list[tuple[Any, ...]]:
            return [
                tuple(r)
                for r in s.execute(
                    sa.select(JobRow.kind, JobRow.attempt, JobRow.state, JobRow.enqueue_count, JobRow.payload)
                    .where(JobRow.tenant == tenant, JobRow.lead_id == lead_id)
                    .order_by(JobRow.kind)
                )
            ]

        first = results[0]
        assert isinstance(first, SubmitResult)
        assert timeline(first.lead_id) == [*timeline(single.lead_id), "duplicate_received"]
        assert jobs(first.lead_id) == jobs(single.lead_id)

"""The dispatcher's repository base: sessions, tenant-scoped lookups, and row builders.

Every read and write of the dispatcher's tables goes through the stores built on this
(`leads`, `attempts`, `dead_letters`, `outbox`), each scoped by tenant. Times come from the
service clock (`leadflow_core.clock`), the one compliance decides with, so a deferral's instant
and our "due" comparisons agree.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from leadflow.v1 import lead_pb2
from leadflow_dispatcher import scheduling
from leadflow_dispatcher.models import (
    DialAttemptRow,
    EventRow,
    JobRow,
    LeadRow,
)
from leadflow_dispatcher.persons import PersonKeys
from leadflow_dispatcher.queueing import JobSpec

# Event kinds reported by workers that finish a job of the given kind.
DONE_EVENTS = {"enriched": "enrich", "synced": "crm_sync"}
JOB_DONE_NAMES = {v: k for k, v in DONE_EVENTS.items()}
# Jobs the relay hands to Dramatiq (the rest are done by the dispatcher itself).
BROKER_KINDS = ("enrich", "crm_sync", "dial", "call_status", "call_price")
# Settlements the dispatcher sends to compliance: the call's end, then (where the end carried no
# price) the provider's price once it is known.
SETTLE_KINDS = ("settle", "settle_price")
LIVE_JOB_STATES = ("pending", "queued")
# The outbox as a Core table, for set-based UPDATEs that need not walk the ORM session.
JOBS = cast(sa.Table, JobRow.__table__)


def new_id() -> str:
    return uuid.uuid4().hex


class NotFound(Exception):
    """No such row for this tenant (another tenant's rows are never visible)."""


def job_spec(row: JobRow) -> JobSpec:
    return JobSpec(
        job_id=row.id,
        tenant=row.tenant,
        lead_id=row.lead_id,
        kind=row.kind,
        attempt=row.attempt,
        queue=row.queue,
        request_id=row.request_id,
        payload=dict(row.payload or {}),
    )


def event_row(
    tenant: str,
    lead_id: str,
    kind: str,
    detail: dict[str, Any],
    request_id: str,
    at: datetime,
    dedupe_key: str | None = None,
) -> EventRow:
    return EventRow(
        tenant=tenant,
        lead_id=lead_id,
        kind=kind,
        detail=detail,
        request_id=request_id,
        at=at,
        dedupe_key=dedupe_key,
    )


def insert_ignoring(s: Session, table: Any, values: list[dict[str, Any]], unique: list[str]) -> Any:
    """`INSERT ... ON CONFLICT (unique) DO NOTHING` for PostgreSQL and SQLite alike."""
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    return insert(table).values(values).on_conflict_do_nothing(index_elements=unique)


@functools.cache
def insert_ignoring_many(dialect: str, table: sa.Table, unique: tuple[str, ...]) -> Any:
    """`insert_ignoring` without its VALUES, built once: run it with a list of rows of the same
    columns (an executemany, which SQLAlchemy sends as multi-row INSERTs of one compiled form).
    A VALUES clause of n rows is compiled again for every new n."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=list(unique))


def job_row(
    tenant: str,
    lead_id: str,
    kind: str,
    queue: str,
    due_at: datetime,
    request_id: str,
    now: datetime,
    attempt: int = 1,
    payload: dict[str, Any] | None = None,
) -> JobRow:
    return JobRow(
        id=new_id(),
        tenant=tenant,
        lead_id=lead_id,
        kind=kind,
        attempt=attempt,
        queue=queue,
        state="pending",
        due_at=due_at,
        lease_until=None,
        enqueue_count=0,
        broker_queue="",
        broker_message_id="",
        enqueued_at=None,
        payload=payload or {},
        request_id=request_id,
        last_error="",
        updated_at=now,
    )


class Repository:
    def __init__(self, sessions: sessionmaker[Session], *, postgres: bool) -> None:
        self.sessions = sessions
        self.postgres = postgres

    def _lead(self, s: Session, tenant: str, lead_id: str) -> LeadRow:
        row = s.get(LeadRow, lead_id) if lead_id else None
        if row is None or row.tenant != tenant:
            raise NotFound(lead_id)
        return row

    def _attempt(self, s: Session, tenant: str, attempt_id: str) -> DialAttemptRow:
        row = s.get(DialAttemptRow, attempt_id) if attempt_id else None
        if row is None or row.tenant != tenant:
            raise NotFound(attempt_id)
        return row

    def _person_clause(self, keys: PersonKeys) -> sa.ColumnElement[bool]:
        clauses = []
        if keys.phone:
            clauses.append(LeadRow.person_phone == keys.phone)
        if keys.email:
            clauses.append(LeadRow.person_email == keys.email)
        return sa.or_(*clauses)


def source_of(lead: lead_pb2.Lead) -> str:
    return scheduling.source_name(lead.source)

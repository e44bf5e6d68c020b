"""The dispatcher's own tables: leads, their timelines, the work outbox, dial attempts, dead letters.

Every table carries `tenant` and every query filters on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The dispatcher's own tables; no other service reads them."""


class LeadRow(Base):
    """A stored lead with its decision; unique per sender id or idempotency key."""

    __tablename__ = "dispatcher_leads"
    __table_args__ = (
        sa.UniqueConstraint("tenant", "source", "vendor_lead_id", name="uq_dispatcher_leads_vendor"),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_dispatcher_leads_idem"),
        sa.Index("ix_dispatcher_leads_phone", "tenant", "person_phone"),
        sa.Index("ix_dispatcher_leads_email", "tenant", "person_email"),
        # Arrival order per (person, campaign): one number each, never two leads with the same.
        sa.UniqueConstraint("tenant", "order_key", "order_seq", name="uq_dispatcher_leads_order"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(sa.String(63))
    source: Mapped[str] = mapped_column(sa.String(32))
    # NULL when absent so the unique constraints only bite on real values.
    vendor_lead_id: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    # Keyed hashes of the phone and email: "the same person" without the values in clear.
    person_phone: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    person_email: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    urgency: Mapped[str] = mapped_column(sa.String(16))
    lead_pb: Mapped[bytes] = mapped_column(sa.LargeBinary)
    decision_pb: Mapped[bytes] = mapped_column(sa.LargeBinary)
    dial_state: Mapped[int] = mapped_column(sa.Integer)
    dial_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    # The lead whose call this one joined (a repeat lead for the same person).
    joined_lead_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    vendor_updated_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    # The vendor's stamp, or our receipt time without one: orders updates about one person.
    version_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    enrichment: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    request_id: Mapped[str] = mapped_column(sa.String(64), default="")
    received_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # The campaign the lead answered, and (person, campaign) as an opaque key with this lead's
    # place in its arrival order (1, 2, ...). NULL for leads stored before these existed.
    campaign: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    order_key: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    order_seq: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)


class LeadAliasRow(Base):
    """A later submission merged into a stored lead: its sender id and idempotency key keep
    answering with that lead, as its own lead would have."""

    __tablename__ = "dispatcher_lead_aliases"
    __table_args__ = (
        sa.UniqueConstraint("tenant", "source", "vendor_lead_id", name="uq_dispatcher_aliases_vendor"),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_dispatcher_aliases_idem"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(sa.String(63))
    lead_id: Mapped[str] = mapped_column(sa.String(32))
    source: Mapped[str] = mapped_column(sa.String(32))
    vendor_lead_id: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class EventRow(Base):
    """One timeline entry; `dedupe_key` makes redelivered reports land once."""

    __tablename__ = "dispatcher_events"
    __table_args__ = (
        sa.UniqueConstraint("tenant", "dedupe_key", name="uq_dispatcher_events_dedupe"),
        sa.Index("ix_dispatcher_events_lead", "tenant", "lead_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(sa.String(63))
    lead_id: Mapped[str] = mapped_column(sa.String(32))
    kind: Mapped[str] = mapped_column(sa.String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    request_id: Mapped[str] = mapped_column(sa.String(64), default="")
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class JobRow(Base):
    """The outbox: one unit of accepted work, written in the lead's transaction.

    The relay enqueues it when due and again when it is overdue and unfinished, so neither a
    crash between commit and enqueue nor a Redis that lost its data loses work.
    """

    __tablename__ = "dispatcher_jobs"
    __table_args__ = (
        sa.UniqueConstraint("tenant", "lead_id", "kind", "attempt", name="uq_dispatcher_jobs_work"),
        # Partial: the relay's pending jobs by due time, the sweeper's queued ones by lease
        # (migration d0012 says why).
        sa.Index(
            "ix_dispatcher_jobs_pending_due",
            "due_at",
            postgresql_where=sa.text("state = 'pending'"),
            sqlite_where=sa.text("state = 'pending'"),
        ),
        sa.Index(
            "ix_dispatcher_jobs_queued_lease",
            "lease_until",
            postgresql_where=sa.text("state = 'queued'"),
            sqlite_where=sa.text("state = 'queued'"),
        ),
        sa.Index("ix_dispatcher_jobs_order", "tenant", "order_key", "kind", "order_seq"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(sa.String(63))
    lead_id: Mapped[str] = mapped_column(sa.String(32))
    # "enrich", "crm_sync", "dial", "call_status" (Dramatiq) or "settle" (done by the dispatcher).
    kind: Mapped[str] = mapped_column(sa.String(32))
    attempt: Mapped[int] = mapped_column(sa.Integer, default=1)
    queue: Mapped[str] = mapped_column(sa.String(64))
    # pending (waiting to be enqueued), queued, done, dead, cancelled.
    state: Mapped[str] = mapped_column(sa.String(16))
    due_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    enqueue_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    # Where the last copy went in Redis (queue or its .DQ, and Dramatiq's redis message id), so
    # the sweeper can tell a lost message from one still waiting behind a backlog.
    broker_queue: Mapped[str] = mapped_column(sa.String(64), default="")
    broker_message_id: Mapped[str] = mapped_column(sa.String(64), default="")
    enqueued_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    # Extra arguments for the job (settle: reservation and outcome; call_status: call id).
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    request_id: Mapped[str] = mapped_column(sa.String(64), default="")
    last_error: Mapped[str] = mapped_column(sa.Text, default="")
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # The lead's (person, campaign) order: the relay enqueues this job only once the same kind
    # of job of every earlier lead in that order is finished (done, dead or cancelled).
    order_key: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    order_seq: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)


class DialAttemptRow(Base):
    """One dial attempt, claimed before the provider is called: at most one claim wins."""

    __tablename__ = "dispatcher_dial_attempts"
    __table_args__ = (
        sa.UniqueConstraint("tenant", "lead_id", "attempt", name="uq_dispatcher_attempts_lead"),
        sa.Index("ix_dispatcher_attempts_call", "tenant", "provider_call_id"),
        sa.Index("ix_dispatcher_attempts_state", "state", "dialed_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(sa.String(63))
    lead_id: Mapped[str] = mapped_column(sa.String(32))
    attempt: Mapped[int] = mapped_column(sa.Integer)
    # claimed (gate not yet passed), dialing (reserved; the provider request may go out),
    # unsure (the provider's answer was ambiguous), reconciling (a worker looks the call up),
    # review (whether a call exists is unproven: a person decides), failed (proven not placed;
    # may be claimed again), deferred, dialed, ended.
    state: Mapped[str] = mapped_column(sa.String(16))
    tries: Mapped[int] = mapped_column(sa.Integer, default=1)
    provider: Mapped[str] = mapped_column(sa.String(32), default="")
    provider_call_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    reservation_id: Mapped[str] = mapped_column(sa.String(64), default="")
    call_status: Mapped[str] = mapped_column(sa.String(16), default="")
    duration_seconds: Mapped[int] = mapped_column(sa.Integer, default=0)
    price_usd: Mapped[str] = mapped_column(sa.String(16), default="")
    error: Mapped[str] = mapped_column(sa.Text, default="")
    claimed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # When this attempt may first have reached the provider since it was last proven not placed:
    # the lower bound of the provider lookup that must precede any further dial.
    dialing_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    dialed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)


class CallStatusRow(Base):
    """Each (call, status) callback once; kept even when it outruns CompleteDialAttempt."""

    __tablename__ = "dispatcher_call_statuses"
    __table_args__ = (
        sa.UniqueConstraint("tenant", "provider_call_id", "status", name="uq_dispatcher_call_status"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(sa.String(63))
    provider_call_id: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16))
    duration_seconds: Mapped[int] = mapped_column(sa.Integer, default=0)
    price_usd: Mapped[str] = mapped_column(sa.String(16), default="")
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    applied: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class DeadLetterRow(Base):
    """A job a worker gave up on, kept for a person to inspect, replay, resolve or purge."""

    __tablename__ = "dispatcher_dead_letters"
    __table_args__ = (sa.Index("ix_dispatcher_dead_letters_tenant", "tenant", "queue", "state"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(sa.String(63))
    queue: Mapped[str] = mapped_column(sa.String(64))
    lead_id: Mapped[str] = mapped_column(sa.String(32), default="")
    actor: Mapped[str] = mapped_column(sa.String(64), default="")
    job_kind: Mapped[str] = mapped_column(sa.String(32), default="")
    job_attempt: Mapped[int] = mapped_column(sa.Integer, default=1)
    error_class: Mapped[str] = mapped_column(sa.String(32), default="")
    error: Mapped[str] = mapped_column(sa.Text, default="")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    # open, replayed, resolved, purged.
    state: Mapped[str] = mapped_column(sa.String(16), default="open")
    note: Mapped[str] = mapped_column(sa.Text, default="")
    message_json: Mapped[str] = mapped_column(sa.Text, default="")
    failed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class QueuePauseRow(Base):
    """A queue an operator paused: the relay hands none of its work to Redis until resumed."""

    __tablename__ = "dispatcher_queue_pauses"

    queue: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    actor: Mapped[str] = mapped_column(sa.String(255), default="")
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class ReviewRow(Base):
    """A lead compliance asked a person to look at, and what that person decided."""

    __tablename__ = "dispatcher_reviews"
    __table_args__ = (sa.Index("ix_dispatcher_reviews_state", "tenant", "state", "created_at"),)

    tenant: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    lead_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    # open, approved, rejected.
    state: Mapped[str] = mapped_column(sa.String(16), default="open")
    reasons: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    source: Mapped[str] = mapped_column(sa.String(32), default="")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    decided_by: Mapped[str] = mapped_column(sa.String(255), default="")
    note: Mapped[str] = mapped_column(sa.Text, default="")
    decided_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)


class AdminAuditRow(Base):
    """One operator action: who (the caller's identity), what, on what, and why. Append-only."""

    __tablename__ = "dispatcher_admin_audit"
    __table_args__ = (sa.Index("ix_dispatcher_admin_audit_at", "at"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(sa.String(255))
    action: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str] = mapped_column(sa.String(255), default="")
    tenant: Mapped[str] = mapped_column(sa.String(63), default="")
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)


class InboundRequestRow(Base):
    """One webhook request the gateway received (secrets removed), kept for the tenant's
    retention for listing and replay. A replay grant is stored hashed, single-use."""

    __tablename__ = "dispatcher_inbound_requests"
    __table_args__ = (
        sa.Index("ix_dispatcher_inbound_requests_at", "tenant", "received_at"),
        sa.Index("ix_dispatcher_inbound_requests_grant", "replay_grant_hash"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(sa.String(63))
    source: Mapped[str] = mapped_column(sa.String(32))
    method: Mapped[str] = mapped_column(sa.String(16))
    path: Mapped[str] = mapped_column(sa.Text)
    query: Mapped[str] = mapped_column(sa.Text, default="")
    headers: Mapped[dict[str, str]] = mapped_column(sa.JSON, default=dict)
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    status: Mapped[int] = mapped_column(sa.Integer)
    error_code: Mapped[str] = mapped_column(sa.String(64), default="")
    lead_ids: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    verified: Mapped[bool] = mapped_column(sa.Boolean)
    replay_of: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    request_id: Mapped[str] = mapped_column(sa.String(128), default="")
    received_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    replay_grant_hash: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    replay_grant_until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)


class EventDeliveryRow(Base):
    """One event for one tenant endpoint: written in the transaction that caused the event (the
    outbox), then delivered and retried by `event_delivery`; it is also the delivery log."""

    __tablename__ = "dispatcher_event_deliveries"
    __table_args__ = (
        sa.Index("ix_dispatcher_event_deliveries_due", "state", "next_at"),
        sa.Index("ix_dispatcher_event_deliveries_at", "tenant", "created_at"),
    )

    # Also the `webhook-id`: the same on every attempt, so a receiver can drop repeats.
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(sa.String(63))
    endpoint: Mapped[str] = mapped_column(sa.String(40))
    event_type: Mapped[str] = mapped_column(sa.String(32))
    lead_id: Mapped[str] = mapped_column(sa.String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    # pending (due at next_at), delivered, failed (attempts used up).
    state: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    last_status: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)

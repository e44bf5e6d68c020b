"""dispatcher tables: leads, events, outbox jobs, dial attempts, call statuses, dead letters

Revision ID: d0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispatcher_call_statuses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("provider_call_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("price_usd", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "provider_call_id", "status", name="uq_dispatcher_call_status"),
    )
    op.create_table(
        "dispatcher_dead_letters",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("lead_id", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("job_kind", sa.String(length=32), nullable=False),
        sa.Column("job_attempt", sa.Integer(), nullable=False),
        sa.Column("error_class", sa.String(length=32), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("message_json", sa.Text(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_dispatcher_dead_letters_tenant",
        "dispatcher_dead_letters",
        ["tenant", "queue", "state"],
        unique=False,
    )
    op.create_table(
        "dispatcher_dial_attempts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("lead_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_call_id", sa.String(length=64), nullable=True),
        sa.Column("reservation_id", sa.String(length=64), nullable=False),
        sa.Column("call_status", sa.String(length=16), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("price_usd", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dialed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "lead_id", "attempt", name="uq_dispatcher_attempts_lead"),
    )
    op.create_index(
        "ix_dispatcher_attempts_call",
        "dispatcher_dial_attempts",
        ["tenant", "provider_call_id"],
        unique=False,
    )
    op.create_index(
        "ix_dispatcher_attempts_state", "dispatcher_dial_attempts", ["state", "dialed_at"], unique=False
    )
    op.create_table(
        "dispatcher_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("lead_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "dedupe_key", name="uq_dispatcher_events_dedupe"),
    )
    op.create_index(
        "ix_dispatcher_events_lead", "dispatcher_events", ["tenant", "lead_id", "id"], unique=False
    )
    op.create_table(
        "dispatcher_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("lead_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enqueue_count", sa.Integer(), nullable=False),
        sa.Column("broker_queue", sa.String(length=64), nullable=False),
        sa.Column("broker_message_id", sa.String(length=64), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "lead_id", "kind", "attempt", name="uq_dispatcher_jobs_work"),
    )
    op.create_index("ix_dispatcher_jobs_due", "dispatcher_jobs", ["state", "due_at"], unique=False)
    op.create_index("ix_dispatcher_jobs_lease", "dispatcher_jobs", ["state", "lease_until"], unique=False)
    op.create_table(
        "dispatcher_leads",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("vendor_lead_id", sa.String(length=255), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("person_phone", sa.String(length=32), nullable=True),
        sa.Column("person_email", sa.String(length=32), nullable=True),
        sa.Column("urgency", sa.String(length=16), nullable=False),
        sa.Column("lead_pb", sa.LargeBinary(), nullable=False),
        sa.Column("decision_pb", sa.LargeBinary(), nullable=False),
        sa.Column("dial_state", sa.Integer(), nullable=False),
        sa.Column("dial_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("joined_lead_id", sa.String(length=32), nullable=True),
        sa.Column("vendor_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enrichment", sa.JSON(), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_dispatcher_leads_idem"),
        sa.UniqueConstraint("tenant", "source", "vendor_lead_id", name="uq_dispatcher_leads_vendor"),
    )
    op.create_index("ix_dispatcher_leads_email", "dispatcher_leads", ["tenant", "person_email"], unique=False)
    op.create_index("ix_dispatcher_leads_phone", "dispatcher_leads", ["tenant", "person_phone"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_dispatcher_leads_phone", table_name="dispatcher_leads")
    op.drop_index("ix_dispatcher_leads_email", table_name="dispatcher_leads")
    op.drop_table("dispatcher_leads")
    op.drop_index("ix_dispatcher_jobs_lease", table_name="dispatcher_jobs")
    op.drop_index("ix_dispatcher_jobs_due", table_name="dispatcher_jobs")
    op.drop_table("dispatcher_jobs")
    op.drop_index("ix_dispatcher_events_lead", table_name="dispatcher_events")
    op.drop_table("dispatcher_events")
    op.drop_index("ix_dispatcher_attempts_state", table_name="dispatcher_dial_attempts")
    op.drop_index("ix_dispatcher_attempts_call", table_name="dispatcher_dial_attempts")
    op.drop_table("dispatcher_dial_attempts")
    op.drop_index("ix_dispatcher_dead_letters_tenant", table_name="dispatcher_dead_letters")
    op.drop_table("dispatcher_dead_letters")
    op.drop_table("dispatcher_call_statuses")

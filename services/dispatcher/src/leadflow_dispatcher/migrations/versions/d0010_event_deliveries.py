"""events out: the per-endpoint outbox and delivery log

Revision ID: d0010_event_deliveries
Revises: d0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d0010_event_deliveries"
down_revision: str | None = "d0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispatcher_event_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("endpoint", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("lead_id", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dispatcher_event_deliveries_due", "dispatcher_event_deliveries", ["state", "next_at"])
    op.create_index(
        "ix_dispatcher_event_deliveries_at", "dispatcher_event_deliveries", ["tenant", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_dispatcher_event_deliveries_at", table_name="dispatcher_event_deliveries")
    op.drop_index("ix_dispatcher_event_deliveries_due", table_name="dispatcher_event_deliveries")
    op.drop_table("dispatcher_event_deliveries")

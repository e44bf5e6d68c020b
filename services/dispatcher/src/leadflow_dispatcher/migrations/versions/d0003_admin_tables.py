"""admin tables: queue pauses, the review queue, the admin audit log

Revision ID: d0003
Revises: d0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d0003"
down_revision: str | None = "d0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispatcher_queue_pauses",
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue"),
    )
    op.create_table(
        "dispatcher_reviews",
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("lead_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=255), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "lead_id"),
    )
    op.create_index("ix_dispatcher_reviews_state", "dispatcher_reviews", ["tenant", "state", "created_at"])
    op.create_table(
        "dispatcher_admin_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dispatcher_admin_audit_at", "dispatcher_admin_audit", ["at"])


def downgrade() -> None:
    op.drop_index("ix_dispatcher_admin_audit_at", table_name="dispatcher_admin_audit")
    op.drop_table("dispatcher_admin_audit")
    op.drop_index("ix_dispatcher_reviews_state", table_name="dispatcher_reviews")
    op.drop_table("dispatcher_reviews")
    op.drop_table("dispatcher_queue_pauses")

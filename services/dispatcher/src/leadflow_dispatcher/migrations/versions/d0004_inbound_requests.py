"""the gateway's inbound request log

Revision ID: d0004
Revises: d0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d0004"
down_revision: str | None = "d0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispatcher_inbound_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=False),
        sa.Column("lead_ids", sa.JSON(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("replay_of", sa.String(length=32), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replay_grant_hash", sa.String(length=64), nullable=True),
        sa.Column("replay_grant_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_dispatcher_inbound_requests_at", "dispatcher_inbound_requests", ["tenant", "received_at"]
    )
    op.create_index(
        "ix_dispatcher_inbound_requests_grant", "dispatcher_inbound_requests", ["replay_grant_hash"]
    )


def downgrade() -> None:
    op.drop_index("ix_dispatcher_inbound_requests_grant", table_name="dispatcher_inbound_requests")
    op.drop_index("ix_dispatcher_inbound_requests_at", table_name="dispatcher_inbound_requests")
    op.drop_table("dispatcher_inbound_requests")

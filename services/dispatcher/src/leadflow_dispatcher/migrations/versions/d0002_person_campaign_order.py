"""leads: campaign, (person, campaign) order key and sequence; merged submissions' aliases;
jobs: order key and sequence for in-order release

Revision ID: d0002
Revises: d0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d0002"
down_revision: str | None = "d0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite (the local default) cannot ALTER constraints; PostgreSQL gets plain ALTERs.
    with op.batch_alter_table("dispatcher_leads") as batch:
        batch.add_column(sa.Column("campaign", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("order_key", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("order_seq", sa.Integer(), nullable=True))
        batch.create_unique_constraint("uq_dispatcher_leads_order", ["tenant", "order_key", "order_seq"])
    with op.batch_alter_table("dispatcher_jobs") as batch:
        batch.add_column(sa.Column("order_key", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("order_seq", sa.Integer(), nullable=True))
        batch.create_index("ix_dispatcher_jobs_order", ["tenant", "order_key", "kind", "order_seq"])
    op.create_table(
        "dispatcher_lead_aliases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("lead_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("vendor_lead_id", sa.String(length=255), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "source", "vendor_lead_id", name="uq_dispatcher_aliases_vendor"),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_dispatcher_aliases_idem"),
    )


def downgrade() -> None:
    op.drop_table("dispatcher_lead_aliases")
    with op.batch_alter_table("dispatcher_jobs") as batch:
        batch.drop_index("ix_dispatcher_jobs_order")
        batch.drop_column("order_seq")
        batch.drop_column("order_key")
    with op.batch_alter_table("dispatcher_leads") as batch:
        batch.drop_constraint("uq_dispatcher_leads_order", type_="unique")
        batch.drop_column("order_seq")
        batch.drop_column("order_key")
        batch.drop_column("campaign")

"""reservations carry their tenant day, estimate and settled price in micro-dollars

Revision ID: 0005_reservation_days
Revises: 0004_named_api_keys
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_reservation_days"
down_revision: str | None = "0004_named_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("compliance_reservations", sa.Column("day", sa.Date(), nullable=True))
    op.add_column(
        "compliance_reservations",
        sa.Column("estimate_micros", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column("compliance_reservations", sa.Column("actual_micros", sa.BigInteger(), nullable=True))
    # Rows from before: their day was the UTC day (the old window), their amounts the strings.
    op.execute(
        "UPDATE compliance_reservations SET day = (created_at AT TIME ZONE 'UTC')::date, "
        "estimate_micros = CASE WHEN estimated_cost_usd ~ '^[0-9]+([.][0-9]+)?$' "
        "THEN round(estimated_cost_usd::numeric * 1000000)::bigint ELSE 0 END, "
        "actual_micros = CASE WHEN settled_at IS NOT NULL AND actual_cost_usd ~ '^[0-9]+([.][0-9]+)?$' "
        "THEN round(actual_cost_usd::numeric * 1000000)::bigint END"
    )
    op.alter_column("compliance_reservations", "day", nullable=False)
    op.alter_column("compliance_reservations", "estimate_micros", server_default=None)
    op.create_index("ix_compliance_reservations_day", "compliance_reservations", ["tenant", "day"])


def downgrade() -> None:
    op.drop_index("ix_compliance_reservations_day", table_name="compliance_reservations")
    op.drop_column("compliance_reservations", "actual_micros")
    op.drop_column("compliance_reservations", "estimate_micros")
    op.drop_column("compliance_reservations", "day")

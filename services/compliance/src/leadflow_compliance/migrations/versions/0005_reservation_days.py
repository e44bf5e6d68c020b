"""reservations carry their tenant day, estimate and settled price in micro-dollars

Revision ID: 0005_reservation_days
Revises: 0004_named_api_keys
Create Date: 2026-12-01
"""

import re
from collections.abc import Sequence
from datetime import UTC
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0005_reservation_days"
down_revision: str | None = "0004_named_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AMOUNT = re.compile(r"^[0-9]+([.][0-9]+)?$")


def upgrade() -> None:
    op.add_column("compliance_reservations", sa.Column("day", sa.Date(), nullable=True))
    op.add_column(
        "compliance_reservations",
        sa.Column("estimate_micros", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column("compliance_reservations", sa.Column("actual_micros", sa.BigInteger(), nullable=True))
    # Rows from before: their day was the UTC day (the old window), their amounts the strings.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE compliance_reservations SET day = (created_at AT TIME ZONE 'UTC')::date, "
            "estimate_micros = CASE WHEN estimated_cost_usd ~ '^[0-9]+([.][0-9]+)?$' "
            "THEN round(estimated_cost_usd::numeric * 1000000)::bigint ELSE 0 END, "
            "actual_micros = CASE WHEN settled_at IS NOT NULL AND actual_cost_usd ~ '^[0-9]+([.][0-9]+)?$' "
            "THEN round(actual_cost_usd::numeric * 1000000)::bigint END"
        )
    else:
        _backfill_row_by_row()
    # Batch mode: SQLite (make run's default database) cannot ALTER a column in place.
    with op.batch_alter_table("compliance_reservations") as batch:
        batch.alter_column("day", existing_type=sa.Date(), nullable=False)
        batch.alter_column("estimate_micros", existing_type=sa.BigInteger(), server_default=None)
        batch.create_index("ix_compliance_reservations_day", ["tenant", "day"])


def _micros(amount: str | None) -> int | None:
    if amount is None or not _AMOUNT.match(amount):
        return None
    return int((Decimal(amount) * 1_000_000).to_integral_value(ROUND_HALF_UP))


def _backfill_row_by_row() -> None:
    rows = sa.table(
        "compliance_reservations",
        sa.column("reservation_id", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("settled_at", sa.DateTime(timezone=True)),
        sa.column("estimated_cost_usd", sa.String),
        sa.column("actual_cost_usd", sa.String),
        sa.column("day", sa.Date),
        sa.column("estimate_micros", sa.BigInteger),
        sa.column("actual_micros", sa.BigInteger),
    )
    conn = op.get_bind()
    found = conn.execute(
        sa.select(
            rows.c.reservation_id,
            rows.c.created_at,
            rows.c.settled_at,
            rows.c.estimated_cost_usd,
            rows.c.actual_cost_usd,
        )
    ).all()
    for rid, created, settled, estimate, actual in found:
        created_utc = created if created.tzinfo is None else created.astimezone(UTC)
        conn.execute(
            rows.update()
            .where(rows.c.reservation_id == rid)
            .values(
                day=created_utc.date(),
                estimate_micros=_micros(estimate) or 0,
                actual_micros=_micros(actual) if settled is not None else None,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("compliance_reservations") as batch:
        batch.drop_index("ix_compliance_reservations_day")
        batch.drop_column("actual_micros")
        batch.drop_column("estimate_micros")
        batch.drop_column("day")

"""state do-not-call lists ("state:TX", ...) and when each was loaded

Revision ID: 0003_state_dnc_lists
Revises: 0002_revocation_evidence
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_state_dnc_lists"
down_revision: str | None = "0002_revocation_evidence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "compliance_dnc_list_entries",
        sa.Column("list_id", sa.String(length=16), nullable=False),
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("list_id", "number"),
    )
    op.create_table(
        "compliance_dnc_list_loads",
        sa.Column("list_id", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("numbers", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("list_id"),
    )


def downgrade() -> None:
    op.drop_table("compliance_dnc_list_loads")
    op.drop_table("compliance_dnc_list_entries")

"""the dial simulator keeps whether a call was recorded and announced

Revision ID: enrichment_0002
Revises: enrichment_0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "enrichment_0002"
down_revision: str | None = "enrichment_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("enrichment_simulated_calls") as batch:
        batch.add_column(sa.Column("recorded", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(
            sa.Column("recording_announced", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("enrichment_simulated_calls") as batch:
        batch.drop_column("recording_announced")
        batch.drop_column("recorded")

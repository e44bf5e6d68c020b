"""dial attempts keep when they may first have reached the provider (reconciliation's lower bound)

Revision ID: d0011_attempt_dialing_at
Revises: d0010_event_deliveries
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d0011_attempt_dialing_at"
down_revision: str | None = "d0010_event_deliveries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dispatcher_dial_attempts") as batch:
        batch.add_column(sa.Column("dialing_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dispatcher_dial_attempts") as batch:
        batch.drop_column("dialing_at")

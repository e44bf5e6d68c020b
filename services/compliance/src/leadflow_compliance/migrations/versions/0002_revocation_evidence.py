"""revocation evidence, campaign scope and confirmation; verified consent

Revision ID: 0002_revocation_evidence
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_revocation_evidence"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("compliance_revocations") as batch:
        batch.add_column(sa.Column("campaign", sa.String(length=200), nullable=False, server_default=""))
        batch.add_column(sa.Column("message_id", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("evidence", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("confirmation_claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_unique_constraint(
            "uq_compliance_revocations_message", ["tenant", "channel", "message_id", "subject_hash"]
        )
    with op.batch_alter_table("compliance_consents") as batch:
        # Consent stored before evidence was required was accepted as it was.
        batch.add_column(sa.Column("verified", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("compliance_consents") as batch:
        batch.drop_column("verified")
    with op.batch_alter_table("compliance_revocations") as batch:
        batch.drop_constraint("uq_compliance_revocations_message", type_="unique")
        batch.drop_column("confirmation_claimed_at")
        batch.drop_column("evidence")
        batch.drop_column("message_id")
        batch.drop_column("campaign")

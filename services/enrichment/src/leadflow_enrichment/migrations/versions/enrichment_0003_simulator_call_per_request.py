"""the dial simulator places a new call for every request, as Twilio does (no dedupe on attempt)

Revision ID: enrichment_0003
Revises: enrichment_0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "enrichment_0003"
down_revision: str | None = "enrichment_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("enrichment_simulated_calls") as batch:
        batch.drop_constraint("uq_enrichment_simulated_calls_tenant_attempt", type_="unique")
        # Reconciliation lists a number's calls since an instant, as Twilio's Calls list does.
        batch.create_index("ix_enrichment_simulated_calls_tenant_to", ["tenant", "to_hash", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("enrichment_simulated_calls") as batch:
        batch.drop_index("ix_enrichment_simulated_calls_tenant_to")
        batch.create_unique_constraint(
            "uq_enrichment_simulated_calls_tenant_attempt", ["tenant", "attempt_id"]
        )

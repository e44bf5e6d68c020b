"""Tables of the local providers: the built-in CRM's contacts and the dial simulator's calls.

Written first by the providers engineer (only these two tables); the actors' own tables come in
a later revision whose down_revision is "enrichment_0001".

Revision ID: enrichment_0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "enrichment_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enrichment_crm_contacts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("external_id", sa.String(64), nullable=False),
        sa.Column("lead_id", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("phone_e164", sa.String(20), nullable=False),
        sa.Column("first_name", sa.String(200), nullable=False),
        sa.Column("last_name", sa.String(200), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("urgency", sa.String(16), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("postal_code", sa.String(16), nullable=False),
        sa.Column("intent", sa.String(16), nullable=False),
        sa.Column("fit_score", sa.Integer(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("custom_fields", sa.JSON(), nullable=False),
        sa.Column("sync_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "external_id", name="uq_enrichment_crm_contacts_tenant_external_id"),
    )
    op.create_index("ix_enrichment_crm_contacts_tenant_email", "enrichment_crm_contacts", ["tenant", "email"])
    op.create_table(
        "enrichment_simulated_calls",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("call_sid", sa.String(34), nullable=False, unique=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("attempt_id", sa.String(64), nullable=False),
        sa.Column("lead_id", sa.String(64), nullable=False),
        sa.Column("to_masked", sa.String(20), nullable=False),
        sa.Column("to_hash", sa.String(32), nullable=False),
        sa.Column("from_number", sa.String(20), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("planned_status", sa.String(16), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=False),
        sa.Column("callbacks_sent", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("tenant", "attempt_id", name="uq_enrichment_simulated_calls_tenant_attempt"),
    )
    op.create_index(
        "ix_enrichment_simulated_calls_tenant_lead", "enrichment_simulated_calls", ["tenant", "lead_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_enrichment_simulated_calls_tenant_lead", table_name="enrichment_simulated_calls")
    op.drop_table("enrichment_simulated_calls")
    op.drop_index("ix_enrichment_crm_contacts_tenant_email", table_name="enrichment_crm_contacts")
    op.drop_table("enrichment_crm_contacts")

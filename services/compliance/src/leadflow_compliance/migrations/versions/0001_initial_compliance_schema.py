"""initial compliance schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The audit log is append-only; on PostgreSQL the database itself refuses changes to it.
_AUDIT_GUARD = """
CREATE OR REPLACE FUNCTION compliance_audit_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'compliance_audit is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER compliance_audit_no_change BEFORE UPDATE OR DELETE ON compliance_audit
  FOR EACH ROW EXECUTE FUNCTION compliance_audit_append_only();
"""


def upgrade() -> None:
    op.create_table(
        "compliance_api_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index(op.f("ix_compliance_api_keys_tenant"), "compliance_api_keys", ["tenant"], unique=False)
    op.create_table(
        "compliance_audit",
        sa.Column("record_id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("lead_id", sa.String(length=64), nullable=False),
        sa.Column("subject_hash", sa.String(length=32), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.Column("rules_version", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("record_id"),
    )
    op.create_index("ix_compliance_audit_tenant_at", "compliance_audit", ["tenant", "at"], unique=False)
    op.create_table(
        "compliance_consents",
        sa.Column("consent_id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("subject_hash", sa.String(length=32), nullable=False),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("consent_id"),
    )
    op.create_index(
        "ix_compliance_consents_subject",
        "compliance_consents",
        ["tenant", "subject_hash", "consented_at"],
        unique=False,
    )
    op.create_table(
        "compliance_contact_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("subject_hash", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("reservation_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reservation_id"),
    )
    op.create_index(
        "ix_compliance_attempts_subject",
        "compliance_contact_attempts",
        ["tenant", "subject_hash", "at"],
        unique=False,
    )
    op.create_table(
        "compliance_dnc",
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("subject_hash", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "subject_hash"),
    )
    op.create_table(
        "compliance_dnc_registry_a",
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("number"),
    )
    op.create_table(
        "compliance_dnc_registry_b",
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("number"),
    )
    op.create_table(
        "compliance_dnc_registry_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("active_slot", sa.String(length=1), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("numbers", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "compliance_emergency_stops",
        sa.Column("scope", sa.String(length=63), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope"),
    )
    op.create_table(
        "compliance_reservations",
        sa.Column("reservation_id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("attempt_id", sa.String(length=200), nullable=False),
        sa.Column("subject_hash", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=False),
        sa.Column("estimated_cost_usd", sa.String(length=32), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("actual_cost_usd", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("reservation_id"),
        sa.UniqueConstraint("tenant", "attempt_id", name="uq_compliance_reservations_attempt"),
    )
    op.create_table(
        "compliance_revocations",
        sa.Column("revocation_id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("subject_hash", sa.String(length=32), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("revocation_id"),
    )
    op.create_index(
        "ix_compliance_revocations_subject",
        "compliance_revocations",
        ["tenant", "subject_hash", "revoked_at"],
        unique=False,
    )
    op.create_table(
        "compliance_tenants",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.execute(
        "INSERT INTO compliance_dnc_registry_state (id, active_slot, version, numbers) VALUES (1, 'a', '', 0)"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_AUDIT_GUARD)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS compliance_audit_no_change ON compliance_audit")
        op.execute("DROP FUNCTION IF EXISTS compliance_audit_append_only()")
    for table in (
        "compliance_tenants",
        "compliance_reservations",
        "compliance_revocations",
        "compliance_emergency_stops",
        "compliance_dnc_registry_state",
        "compliance_dnc_registry_b",
        "compliance_dnc_registry_a",
        "compliance_dnc",
        "compliance_contact_attempts",
        "compliance_consents",
        "compliance_audit",
        "compliance_api_keys",
    ):
        op.drop_table(table)

"""The compliance service's own tables (prefixed `compliance_`).

Phone numbers are stored only as keyed subject hashes (leadflow_core.pii.subject_hash), except the
National DNC Registry, which is public data and is kept as 10-digit integers for fast loading.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import text as sa_text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The compliance service's own tables; no other service reads them."""


class TenantRow(Base):
    __tablename__ = "compliance_tenants"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    # The Tenant message as proto JSON, secrets included (only the internal RPCs return them).
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_reason: Mapped[str] = mapped_column(Text, default="")
    revision: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKeyRow(Base):
    __tablename__ = "compliance_api_keys"
    __table_args__ = (
        # A name picks one valid key; a revoked key's name may be reused.
        Index(
            "ux_compliance_api_keys_valid_name",
            "tenant",
            "name",
            unique=True,
            postgresql_where=sa_text("revoked_at IS NULL"),
            sqlite_where=sa_text("revoked_at IS NULL"),
        ),
    )

    # Also the key's visible part (`lf_<key_id>_...`, see api_key_hashing).
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # How a key from before named keys finds its row (a truncated SHA-256); empty for newer keys.
    lookup: Mapped[str] = mapped_column(String(40), default="", index=True)
    # scrypt, salted, with its parameters (api_key_hashing); the key itself is shown once.
    key_hash: Mapped[str] = mapped_column(String(200))
    # Comma-separated, from api_key_hashing.SCOPES.
    scopes: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Written in batches (api_key_registry), not per request.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ConsentRow(Base):
    __tablename__ = "compliance_consents"
    __table_args__ = (Index("ix_compliance_consents_subject", "tenant", "subject_hash", "consented_at"),)

    consent_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    subject_hash: Mapped[str] = mapped_column(String(32))
    consented_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # ConsentEvidence as proto JSON: disclosure text, page, IP, TrustedForm / Jornaya references.
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(200), default="")
    # False when granted without full evidence (consent_evidence.py): kept, never auto-dialed on.
    verified: Mapped[bool] = mapped_column(Boolean, default=True)


class RevocationRow(Base):
    __tablename__ = "compliance_revocations"
    __table_args__ = (
        Index("ix_compliance_revocations_subject", "tenant", "subject_hash", "revoked_at"),
        # A redelivered reply or disposition is the same revocation (NULL ids never collide).
        UniqueConstraint(
            "tenant", "channel", "message_id", "subject_hash", name="uq_compliance_revocations_message"
        ),
    )

    revocation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    subject_hash: Mapped[str] = mapped_column(String(32))
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(String(40))
    note: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200), default="")
    # "" = every campaign of the tenant; else the one campaign the opt-out answered.
    campaign: Mapped[str] = mapped_column(String(200), default="")
    message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # What revoked: channel, message id, the text or disposition, how it matched.
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The one confirmation text allowed within 5 minutes (47 CFR 64.1200(a)(12)) was claimed.
    confirmation_claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DncRow(Base):
    """The tenant's own Do-Not-Call list."""

    __tablename__ = "compliance_dnc"

    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)
    subject_hash: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200), default="")


class DncRegistryA(Base):
    """National DNC Registry, slot A. Imports load the idle slot, then flip `DncRegistryState`."""

    __tablename__ = "compliance_dnc_registry_a"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class DncRegistryB(Base):
    __tablename__ = "compliance_dnc_registry_b"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class DncRegistryState(Base):
    __tablename__ = "compliance_dnc_registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # "a" or "b": the slot evaluation reads.
    active_slot: Mapped[str] = mapped_column(String(1), default="a")
    version: Mapped[str] = mapped_column(String(64), default="")
    loaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    numbers: Mapped[int] = mapped_column(BigInteger, default=0)


class ContactAttemptRow(Base):
    """Every call or text to a person, for the per-person attempt caps of state law."""

    __tablename__ = "compliance_contact_attempts"
    __table_args__ = (Index("ix_compliance_attempts_subject", "tenant", "subject_hash", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    subject_hash: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(String(20))
    reservation_id: Mapped[str | None] = mapped_column(String(40), nullable=True, unique=True)


class ReservationRow(Base):
    __tablename__ = "compliance_reservations"
    __table_args__ = (UniqueConstraint("tenant", "attempt_id", name="uq_compliance_reservations_attempt"),)

    reservation_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    attempt_id: Mapped[str] = mapped_column(String(200))
    subject_hash: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The DIAL_NOW decision, as proto JSON, returned again when the attempt is repeated.
    decision: Mapped[dict[str, Any]] = mapped_column(JSON)
    estimated_cost_usd: Mapped[str] = mapped_column(String(32))
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    outcome: Mapped[str] = mapped_column(String(32), default="")
    actual_cost_usd: Mapped[str] = mapped_column(String(32), default="")


class EmergencyStopRow(Base):
    __tablename__ = "compliance_emergency_stops"

    # "" = every tenant.
    scope: Mapped[str] = mapped_column(String(63), primary_key=True)
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200), default="")
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditRow(Base):
    """Append-only: nothing updates or deletes these rows (PostgreSQL enforces it by trigger)."""

    __tablename__ = "compliance_audit"
    __table_args__ = (Index("ix_compliance_audit_tenant_at", "tenant", "at"),)

    record_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200), default="")
    action: Mapped[str] = mapped_column(String(40))
    lead_id: Mapped[str] = mapped_column(String(64), default="")
    subject_hash: Mapped[str] = mapped_column(String(32), default="")
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    rules_version: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DncListEntry(Base):
    """A state's own do-not-call list ("state:TX", ...), public data kept as 10-digit integers.

    The National DNC Registry keeps its two slot tables above; state lists are smaller and are
    replaced in one transaction (readers see the previous copy until it commits)."""

    __tablename__ = "compliance_dnc_list_entries"

    list_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class DncListLoad(Base):
    """When each state list was last loaded: a list with no row here was never loaded."""

    __tablename__ = "compliance_dnc_list_loads"

    list_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), default="")
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    numbers: Mapped[int] = mapped_column(BigInteger, default=0)

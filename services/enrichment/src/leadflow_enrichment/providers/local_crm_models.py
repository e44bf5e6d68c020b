"""Tables of the local providers: the built-in CRM's contacts and the dial simulator's calls."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from leadflow_enrichment.models import Base


class LocalCrmContact(Base):
    """A contact in the built-in CRM: one per person per tenant (matched by external id, then email)."""

    __tablename__ = "enrichment_crm_contacts"
    __table_args__ = (
        sa.UniqueConstraint("tenant", "external_id", name="uq_enrichment_crm_contacts_tenant_external_id"),
        sa.Index("ix_enrichment_crm_contacts_tenant_email", "tenant", "email"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(sa.String(63))
    # Our lead id (the "external id" a real CRM would hold in a custom field).
    external_id: Mapped[str] = mapped_column(sa.String(64))
    lead_id: Mapped[str] = mapped_column(sa.String(64))
    email: Mapped[str] = mapped_column(sa.String(320), default="")
    phone_e164: Mapped[str] = mapped_column(sa.String(20), default="")
    first_name: Mapped[str] = mapped_column(sa.String(200), default="")
    last_name: Mapped[str] = mapped_column(sa.String(200), default="")
    source: Mapped[str] = mapped_column(sa.String(32), default="")
    urgency: Mapped[str] = mapped_column(sa.String(16), default="")
    state: Mapped[str] = mapped_column(sa.String(8), default="")
    postal_code: Mapped[str] = mapped_column(sa.String(16), default="")
    intent: Mapped[str] = mapped_column(sa.String(16), default="")
    fit_score: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    reasons: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    custom_fields: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    sync_count: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class SimulatedCall(Base):
    """One call placed by the dial simulator: one row per request, like a carrier (the attempt id
    is a marker carried back, never a key that folds two requests into one call)."""

    __tablename__ = "enrichment_simulated_calls"
    __table_args__ = (
        sa.Index("ix_enrichment_simulated_calls_tenant_lead", "tenant", "lead_id"),
        sa.Index("ix_enrichment_simulated_calls_tenant_to", "tenant", "to_hash", "created_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    call_sid: Mapped[str] = mapped_column(sa.String(34), unique=True)
    tenant: Mapped[str] = mapped_column(sa.String(63))
    attempt_id: Mapped[str] = mapped_column(sa.String(64))
    lead_id: Mapped[str] = mapped_column(sa.String(64))
    # Never the number in clear: masked for people, keyed hash for correlation.
    to_masked: Mapped[str] = mapped_column(sa.String(20))
    to_hash: Mapped[str] = mapped_column(sa.String(32))
    from_number: Mapped[str] = mapped_column(sa.String(20), default="")
    status: Mapped[str] = mapped_column(sa.String(16))
    # The outcome the simulation will end with, fixed when the call is placed.
    planned_status: Mapped[str] = mapped_column(sa.String(16))
    duration_seconds: Mapped[int] = mapped_column(sa.Integer, default=0)
    callback_url: Mapped[str] = mapped_column(sa.Text, default="")
    callbacks_sent: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # When the simulated call is over; past it, fetch_status settles a call whose callbacks were lost.
    due_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    # Recorded only when compliance allowed it, announced first where it said so (Decision).
    recorded: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    recording_announced: Mapped[bool] = mapped_column(sa.Boolean, default=False)

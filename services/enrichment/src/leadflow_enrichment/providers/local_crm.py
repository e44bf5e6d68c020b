"""The local CRM: contacts kept in enrichment's own tables, upserted idempotently."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, literal, or_, select, union_all, update
from sqlalchemy.exc import IntegrityError, OperationalError

from leadflow_core.timestamps import utcnow
from leadflow_enrichment.failures import ErrorClass, ProviderError
from leadflow_enrichment.providers.base import CrmResult, Enrichment, LeadView
from leadflow_enrichment.providers.local_crm_models import LocalCrmContact


def external_id_for(lead: LeadView) -> str:
    return lead.lead_id


# Built once: the values go in as execution parameters, so SQLAlchemy neither rebuilds nor
# re-keys a statement per lead (`.values(**row)` per call was most of the upsert's CPU).
_INSERT = insert(LocalCrmContact).returning(LocalCrmContact.id)
_UPDATE = (
    update(LocalCrmContact)
    .where(LocalCrmContact.id == bindparam("contact_id"))
    .values(sync_count=LocalCrmContact.sync_count + 1)
)


# The contact of this lead first, else the oldest with its email: two lookups, each on its own
# index. One `external_id = ? OR email = ?` let the planner settle for the tenant's prefix of
# the email index and filter every contact of the tenant (stale statistics on a growing table).
_by_external_id = select(LocalCrmContact.id, literal(0).label("rank")).where(
    LocalCrmContact.tenant == bindparam("tenant"), LocalCrmContact.external_id == bindparam("external_id")
)
_by_email = (
    select(LocalCrmContact.id, literal(1).label("rank"))
    .where(LocalCrmContact.tenant == bindparam("tenant"), LocalCrmContact.email == bindparam("email"))
    .order_by(LocalCrmContact.id)
    .limit(1)
)
_found = union_all(_by_external_id, _by_email.subquery().select()).subquery()
_FIND = select(_found.c.id).order_by(_found.c.rank).limit(1)


class LocalCrm:
    """Implements `Crm`. One contact per (tenant, external id); a new lead of a known email joins it."""

    name = "local"

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def find_lead(self, lead: LeadView) -> CrmResult | None:
        """The contact this lead made or last updated (None: no write of it reached us)."""
        try:
            with self._engine.connect() as conn:
                contact_id = conn.execute(
                    select(LocalCrmContact.id)
                    .where(
                        LocalCrmContact.tenant == lead.tenant,
                        or_(
                            LocalCrmContact.external_id == external_id_for(lead),
                            LocalCrmContact.lead_id == lead.lead_id,
                        ),
                    )
                    .limit(1)
                ).scalar()
        except OperationalError as err:
            raise ProviderError(
                "local CRM database unavailable", ErrorClass.TEMPORARY, provider=self.name
            ) from err
        return None if contact_id is None else CrmResult(external_id=f"local-{contact_id}", created=False)

    def upsert_lead(self, lead: LeadView, enrichment: Enrichment | None) -> CrmResult:
        if not lead.tenant or not lead.lead_id:
            raise ProviderError("lead has no tenant or id", ErrorClass.VALIDATION, provider=self.name)
        # Two workers may race on one person: the loser's insert hits the unique key and, tried
        # again, updates. SQLite may also refuse a write while another commits: try again too.
        last: Exception | None = None
        for _ in range(3):
            try:
                with self._engine.begin() as conn:
                    return self._upsert(conn, lead, enrichment)
            except (IntegrityError, OperationalError) as err:
                last = err
        message = (
            "local CRM upsert kept conflicting"
            if isinstance(last, IntegrityError)
            else "local CRM database unavailable"
        )
        raise ProviderError(message, ErrorClass.TEMPORARY, provider=self.name) from last

    def _upsert(self, conn: Connection, lead: LeadView, enrichment: Enrichment | None) -> CrmResult:
        # Core statements, not the ORM: this runs once per synced lead, and the unit of work
        # cost more CPU than the writes themselves.
        email = lead.email.strip().lower()
        external_id = external_id_for(lead)
        found = conn.execute(
            _FIND, {"tenant": lead.tenant, "external_id": external_id, "email": email or None}
        ).scalar()
        now = utcnow()
        values = self._values(lead, email, enrichment)
        if found is None:
            row = {
                "tenant": lead.tenant,
                "external_id": external_id,
                "created_at": now,
                "updated_at": now,
                "sync_count": 1,
                **values,
            }
            new_id = conn.execute(_INSERT, row).scalar_one()
            return CrmResult(external_id=f"local-{new_id}", created=True)
        # Never blank out what we knew: a later, sparser lead only adds details.
        known = {k: v for k, v in values.items() if v not in ("", None, {}, [])}
        conn.execute(_UPDATE, {"contact_id": found, "updated_at": now, **known})
        return CrmResult(external_id=f"local-{found}", created=False)

    @staticmethod
    def _values(lead: LeadView, email: str, enrichment: Enrichment | None) -> dict[str, Any]:
        values: dict[str, Any] = {
            "lead_id": lead.lead_id,
            "email": email,
            "phone_e164": lead.phone_e164,
            "first_name": lead.first_name,
            "last_name": lead.last_name,
            "source": lead.source,
            "urgency": lead.urgency,
            "state": lead.state,
            "postal_code": lead.postal_code,
            "custom_fields": dict(lead.custom_fields),
        }
        if enrichment is not None:
            values.update(
                intent=enrichment.intent, fit_score=enrichment.fit_score, reasons=list(enrichment.reasons)
            )
        return values

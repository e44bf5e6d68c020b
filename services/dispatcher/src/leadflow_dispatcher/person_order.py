"""Identity and order per (person, campaign): merging a repeat lead into the stored one, the
arrival sequence of a person's leads, and lookups by the senders' ids (merged ones included).

Kept apart from `leads` so the submit path only calls in here: every function runs inside the
submit transaction, after the advisory locks of the person's keys are held (see `LeadStore.submit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadflow.v1 import decision_pb2, lead_pb2
from leadflow_core.timestamps import from_proto
from leadflow_dispatcher.merging import merge_leads
from leadflow_dispatcher.models import JobRow, LeadAliasRow, LeadRow
from leadflow_dispatcher.persons import PersonKeys, campaign_of
from leadflow_dispatcher.queueing import JobSpec
from leadflow_dispatcher.repository import LIVE_JOB_STATES, Repository, event_row

# The jobs of a submit that run in (person, campaign) arrival order; retries and call handling
# belong to one lead and are not ordered against other leads.
ORDERED_KINDS = ("enrich", "crm_sync", "dial")


@dataclass
class SubmitResult:
    lead_id: str
    duplicate: bool
    dial_state: int
    dial_at: datetime | None
    reasons: list[decision_pb2.Reason] = field(default_factory=list)
    joined_lead_id: str = ""
    # Jobs to enqueue right after the commit, each with its delay in seconds.
    jobs: list[tuple[JobSpec, float]] = field(default_factory=list)
    merged: bool = False


def duplicate_result(row: LeadRow, merged: bool = False) -> SubmitResult:
    decision = decision_pb2.Decision.FromString(row.decision_pb)
    return SubmitResult(
        lead_id=row.id,
        duplicate=True,
        dial_state=row.dial_state,
        dial_at=row.dial_at,
        reasons=list(decision.reasons),
        joined_lead_id=row.joined_lead_id or "",
        merged=merged,
    )


class PersonOrderStore(Repository):
    def _alias_of(self, s: Session, lead: lead_pb2.Lead, source: str) -> LeadRow | None:
        """The lead a merged submission with these ids went into."""
        clauses = []
        if lead.vendor_lead_id:
            clauses.append(
                sa.and_(LeadAliasRow.source == source, LeadAliasRow.vendor_lead_id == lead.vendor_lead_id)
            )
        if lead.idempotency_key:
            clauses.append(LeadAliasRow.idempotency_key == lead.idempotency_key)
        if not clauses:
            return None
        lead_id = s.scalars(
            sa.select(LeadAliasRow.lead_id)
            .where(LeadAliasRow.tenant == lead.tenant, sa.or_(*clauses))
            .limit(1)
        ).first()
        return s.get(LeadRow, lead_id) if lead_id else None

    def _merge_target(
        self, s: Session, lead: lead_pb2.Lead, keys: PersonKeys, now: datetime, window: float
    ) -> LeadRow | None:
        """The newest lead of this person and campaign stored within the window, row-locked."""
        campaign = campaign_of(lead)
        if not campaign or window <= 0 or not keys.any:
            return None
        rows = s.scalars(
            sa.select(LeadRow)
            .where(
                LeadRow.tenant == lead.tenant,
                LeadRow.campaign == campaign,
                self._person_clause(keys),
                LeadRow.created_at >= now - timedelta(seconds=window),
            )
            .order_by(LeadRow.created_at.desc())
            .limit(5)
            .with_for_update()
        ).all()
        # A vendor's test lead and a real one never merge: the real one must stay dialable.
        return next((r for r in rows if lead_pb2.Lead.FromString(r.lead_pb).is_test == lead.is_test), None)

    def _merge_into(
        self,
        s: Session,
        row: LeadRow,
        lead: lead_pb2.Lead,
        keys: PersonKeys,
        source: str,
        request_id: str,
        now: datetime,
    ) -> SubmitResult:
        """Newer fields into `row`, earliest consent kept; no new lead, no new job."""
        stored = lead_pb2.Lead.FromString(row.lead_pb)
        merged = merge_leads(stored, lead)
        row.lead_pb = merged.lead.SerializeToString()
        # The person keys follow the merged lead's phone and email (what will be dialed and synced).
        if "contact.phone" in merged.changed or not row.person_phone:
            row.person_phone = keys.phone or row.person_phone
        if "contact.email" in merged.changed or not row.person_email:
            row.person_email = keys.email or row.person_email
        stamp = from_proto(lead.vendor_updated_at) if lead.HasField("vendor_updated_at") else None
        if stamp is not None and (row.vendor_updated_at is None or stamp > row.vendor_updated_at):
            row.vendor_updated_at = stamp
            row.version_at = max(row.version_at, stamp)
        if lead.vendor_lead_id or lead.idempotency_key:
            s.add(
                LeadAliasRow(
                    tenant=row.tenant,
                    lead_id=row.id,
                    source=source,
                    vendor_lead_id=lead.vendor_lead_id or None,
                    idempotency_key=lead.idempotency_key or None,
                    at=now,
                )
            )
        s.add(
            event_row(
                row.tenant,
                row.id,
                "merged",
                {"source": source, "changed": merged.changed, "consent": merged.consent},
                request_id,
                now,
            )
        )
        s.flush()
        return duplicate_result(row, merged=True)

    def _next_order_seq(self, s: Session, tenant: str, order_key: str) -> int:
        last = s.scalar(
            sa.select(sa.func.max(LeadRow.order_seq)).where(
                LeadRow.tenant == tenant, LeadRow.order_key == order_key
            )
        )
        return int(last or 0) + 1

    def _held_kinds(self, s: Session, tenant: str, order_key: str) -> set[str]:
        """Kinds of work an earlier lead of this (person, campaign) has not finished: the new
        lead's jobs of these kinds wait for the relay instead of being sent at once."""
        return set(
            s.scalars(
                sa.select(JobRow.kind)
                .where(
                    JobRow.tenant == tenant,
                    JobRow.order_key == order_key,
                    JobRow.kind.in_(ORDERED_KINDS),
                    JobRow.state.in_(LIVE_JOB_STATES),
                )
                .distinct()
            )
        )

    def find_leads(self, tenant: str, source: str, vendor_ids: list[str]) -> list[tuple[str, SubmitResult]]:
        """(vendor id, the answer a duplicate submit would get) for each id already stored."""
        ids = sorted({v for v in vendor_ids if v})
        if not ids:
            return []
        with self.sessions() as s:
            rows = s.scalars(
                sa.select(LeadRow).where(
                    LeadRow.tenant == tenant, LeadRow.source == source, LeadRow.vendor_lead_id.in_(ids)
                )
            ).all()
            found = {r.vendor_lead_id or "": duplicate_result(r) for r in rows}
            aliases = s.execute(
                sa.select(LeadAliasRow.vendor_lead_id, LeadAliasRow.lead_id).where(
                    LeadAliasRow.tenant == tenant,
                    LeadAliasRow.source == source,
                    LeadAliasRow.vendor_lead_id.in_(ids),
                )
            ).all()
            for vendor_id, lead_id in aliases:
                target = s.get(LeadRow, lead_id)
                if vendor_id and target is not None and vendor_id not in found:
                    found[vendor_id] = duplicate_result(target, merged=True)
            return [(v, found[v]) for v in ids if v in found]

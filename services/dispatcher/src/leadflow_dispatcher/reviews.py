"""The review queue: leads compliance asked a person to look at, and that person's decision.

Approving schedules a dial (the next attempt, due now) through the normal final gate: a person
settles what the machine could not (e.g. where the callee lives), never the law itself, so
compliance still decides right before the dial. Rejecting cancels any live dial work.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from leadflow.v1 import admin_pb2, decision_pb2, dispatcher_pb2, lead_pb2
from leadflow_core.clock import now as utcnow
from leadflow_core.timestamps import to_proto
from leadflow_dispatcher.models import JobRow, ReviewRow
from leadflow_dispatcher.repository import LIVE_JOB_STATES, NotFound, Repository, event_row, job_row


class ReviewClosed(Exception):
    """The review was already decided."""


def review_row(
    tenant: str, lead_id: str, decision: decision_pb2.Decision, source: str, now: datetime
) -> ReviewRow:
    return ReviewRow(
        tenant=tenant,
        lead_id=lead_id,
        state="open",
        reasons=[r.rule_id for r in decision.reasons],
        source=source,
        created_at=now,
        decided_by="",
        note="",
        decided_at=None,
    )


def review_proto(row: ReviewRow) -> admin_pb2.ReviewItem:
    item = admin_pb2.ReviewItem(
        tenant=row.tenant,
        lead_id=row.lead_id,
        state=row.state,
        reasons=list(row.reasons or []),
        decided_by=row.decided_by,
        note=row.note,
        source=row.source,
    )
    item.created_at.CopyFrom(to_proto(row.created_at))
    return item


class ReviewStore(Repository):
    def list_reviews(self, tenant: str, state: str, limit: int) -> list[admin_pb2.ReviewItem]:
        query = sa.select(ReviewRow)
        if tenant:
            query = query.where(ReviewRow.tenant == tenant)
        if state != "all":
            query = query.where(ReviewRow.state == (state or "open"))
        with self.sessions() as s:
            rows = s.scalars(query.order_by(ReviewRow.created_at).limit(limit or 100)).all()
            return [review_proto(r) for r in rows]

    def decide_review(
        self, tenant: str, lead_id: str, approve: bool, actor: str, note: str, state: str = ""
    ) -> admin_pb2.ReviewItem:
        now = utcnow()
        with self.sessions.begin() as s:
            review = s.get(ReviewRow, (tenant, lead_id), with_for_update=True)
            if review is None:
                raise NotFound(lead_id)
            if review.state != "open":
                raise ReviewClosed(review.state)
            lead = self._lead(s, tenant, lead_id)
            review.state = "approved" if approve else "rejected"
            review.decided_by, review.note, review.decided_at = actor, note, now
            detail = {"actor": actor, "note": note}
            if approve and state:
                stored = lead_pb2.Lead.FromString(lead.lead_pb)
                stored.contact.address.state = state
                stored.contact.address.country = stored.contact.address.country or "US"
                lead.lead_pb = stored.SerializeToString()
                detail["state"] = state
            if approve:
                last = s.scalar(
                    sa.select(sa.func.max(JobRow.attempt)).where(
                        JobRow.tenant == tenant, JobRow.lead_id == lead_id, JobRow.kind == "dial"
                    )
                )
                attempt = int(last or 0) + 1
                s.add(
                    job_row(
                        tenant, lead_id, "dial", f"dial.{lead.urgency}", now, lead.request_id, now, attempt
                    )
                )
                lead.dial_state = dispatcher_pb2.DIAL_STATE_SCHEDULED
                lead.dial_at = now
                s.add(event_row(tenant, lead_id, "review_approved", detail, lead.request_id, now))
            else:
                s.execute(
                    sa.update(JobRow)
                    .where(
                        JobRow.tenant == tenant,
                        JobRow.lead_id == lead_id,
                        JobRow.kind == "dial",
                        JobRow.state.in_(LIVE_JOB_STATES),
                    )
                    .values(state="cancelled", updated_at=now)
                )
                lead.dial_state = dispatcher_pb2.DIAL_STATE_BLOCKED
                lead.dial_at = None
                s.add(event_row(tenant, lead_id, "review_rejected", detail, lead.request_id, now))
            s.flush()
            return review_proto(review)

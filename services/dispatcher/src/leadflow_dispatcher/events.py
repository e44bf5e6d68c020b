"""Events out: the per-endpoint outbox rows written with the state change, and the delivery log.

An event is one `EventDeliveryRow` per endpoint the tenant subscribed to it, added in the same
transaction as the lead, call status or dead letter that caused it, so an event is sent if and
only if its cause committed. `event_delivery` sends them; the rows stay as the delivery log.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadflow_core.clock import now as utcnow
from leadflow_dispatcher.models import DialAttemptRow, EventDeliveryRow
from leadflow_dispatcher.policies import PolicyView
from leadflow_dispatcher.repository import Repository


def add_event(
    s: Session,
    policy: PolicyView,
    tenant: str,
    event_type: str,
    lead_id: str,
    data: dict[str, Any],
    now: datetime,
) -> None:
    """Queue `event_type` for every endpoint of the tenant that takes it (none: no rows)."""
    for endpoint in policy.subscribers(event_type):
        # Standard Webhooks' payload shape: type, timestamp, data.
        payload = {"type": event_type, "timestamp": now.isoformat(), "data": {"tenant": tenant, **data}}
        s.add(
            EventDeliveryRow(
                id="msg_" + uuid.uuid4().hex,
                tenant=tenant,
                endpoint=endpoint,
                event_type=event_type,
                lead_id=lead_id,
                payload=payload,
                state="pending",
                attempts=0,
                next_at=now,
                last_status=0,
                last_error="",
                created_at=now,
                delivered_at=None,
            )
        )


def add_call_placed(
    s: Session, policy: PolicyView, attempt: DialAttemptRow, provider: str, call_id: str, now: datetime
) -> None:
    data = {"lead_id": attempt.lead_id, "attempt": attempt.attempt, "provider": provider, "call_id": call_id}
    add_event(s, policy, attempt.tenant, "call.placed", attempt.lead_id, data, now)


@dataclass(frozen=True)
class DueDelivery:
    id: str
    tenant: str
    endpoint: str
    payload: dict[str, Any]
    attempts: int


class EventDeliveryStore(Repository):
    def claim_due_deliveries(self, limit: int, lease_seconds: float) -> list[DueDelivery]:
        """Due deliveries, pushed `lease_seconds` ahead so a crashed sender's claims come back."""
        now = utcnow()
        with self.sessions.begin() as s:
            rows = s.scalars(
                sa.select(EventDeliveryRow)
                .where(EventDeliveryRow.state == "pending", EventDeliveryRow.next_at <= now)
                .order_by(EventDeliveryRow.next_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                row.next_at = now + timedelta(seconds=lease_seconds)
            return [DueDelivery(r.id, r.tenant, r.endpoint, dict(r.payload), r.attempts) for r in rows]

    def finish_delivery_attempt(
        self, delivery_id: str, status: int, error: str, retry_at: datetime | None
    ) -> None:
        """One attempt's outcome: delivered (2xx), due again at `retry_at`, or failed for good."""
        now = utcnow()
        with self.sessions.begin() as s:
            row = s.get(EventDeliveryRow, delivery_id)
            if row is None:
                return
            row.attempts += 1
            row.last_status = status
            row.last_error = error[:2000]
            if 200 <= status < 300:
                row.state, row.delivered_at = "delivered", now
            elif retry_at is None:
                row.state = "failed"
            else:
                row.next_at = retry_at

    def list_event_deliveries(
        self, tenant: str, state: str, endpoint: str, event_type: str, limit: int
    ) -> Sequence[EventDeliveryRow]:
        where = [EventDeliveryRow.tenant == tenant]
        if state:
            where.append(EventDeliveryRow.state == state)
        if endpoint:
            where.append(EventDeliveryRow.endpoint == endpoint)
        if event_type:
            where.append(EventDeliveryRow.event_type == event_type)
        with self.sessions() as s:
            rows = s.scalars(
                sa.select(EventDeliveryRow)
                .where(*where)
                .order_by(EventDeliveryRow.created_at.desc(), EventDeliveryRow.id)
                .limit(limit)
            ).all()
            s.expunge_all()
            return rows

"""The admin queries over the dispatcher's tables: errors, leads, calls, outbox, audit log.

Windows are counted back from the service clock; every query can be narrowed to one tenant.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from leadflow.v1 import admin_pb2, decision_pb2, dispatcher_pb2, lead_pb2
from leadflow_core.clock import now as utcnow
from leadflow_core.pii import mask_email, mask_phone
from leadflow_core.timestamps import to_proto
from leadflow_dispatcher.models import (
    AdminAuditRow,
    DeadLetterRow,
    DialAttemptRow,
    EventRow,
    JobRow,
    LeadRow,
)
from leadflow_dispatcher.persons import PersonKeys
from leadflow_dispatcher.repository import SETTLE_KINDS, Repository


def _decimal(text: str) -> Decimal:
    try:
        # Twilio reports prices as negative numbers (money leaving the account).
        return abs(Decimal(text)) if text else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


class AdminStatsStore(Repository):
    def error_stats(self, tenant: str, window_seconds: int) -> list[admin_pb2.ErrorStat]:
        since = utcnow() - timedelta(seconds=window_seconds)
        query = (
            sa.select(
                DeadLetterRow.tenant,
                DeadLetterRow.error_class,
                DeadLetterRow.queue,
                sa.func.coalesce(LeadRow.source, ""),
                sa.func.count(),
                sa.func.sum(sa.case((DeadLetterRow.state == "open", 1), else_=0)),
            )
            .select_from(DeadLetterRow)
            .outerjoin(LeadRow, LeadRow.id == DeadLetterRow.lead_id)
            .where(DeadLetterRow.failed_at >= since)
            .group_by(DeadLetterRow.tenant, DeadLetterRow.error_class, DeadLetterRow.queue, LeadRow.source)
        )
        if tenant:
            query = query.where(DeadLetterRow.tenant == tenant)
        with self.sessions() as s:
            return [
                admin_pb2.ErrorStat(
                    tenant=t, error_class=c or "unknown", queue=q, source=src, count=int(n), open=int(o or 0)
                )
                for t, c, q, src, n, o in s.execute(query).all()
            ]

    def lead_stats(self, tenant: str, window_seconds: int) -> list[admin_pb2.LeadStat]:
        since = utcnow() - timedelta(seconds=window_seconds)
        stats: dict[tuple[str, str], admin_pb2.LeadStat] = {}

        def stat(t: str, src: str) -> admin_pb2.LeadStat:
            key = (t, src)
            if key not in stats:
                stats[key] = admin_pb2.LeadStat(tenant=t, source=src)
            return stats[key]

        leads = sa.select(LeadRow.tenant, LeadRow.source, LeadRow.dial_state, LeadRow.decision_pb).where(
            LeadRow.created_at >= since
        )
        dups = (
            sa.select(EventRow.tenant, LeadRow.source, sa.func.count())
            .select_from(EventRow)
            .join(LeadRow, LeadRow.id == EventRow.lead_id)
            .where(EventRow.kind == "duplicate_received", EventRow.at >= since)
            .group_by(EventRow.tenant, LeadRow.source)
        )
        if tenant:
            leads = leads.where(LeadRow.tenant == tenant)
            dups = dups.where(EventRow.tenant == tenant)
        with self.sessions() as s:
            for t, src, dial_state, decision_raw in s.execute(leads):
                row = stat(t, src)
                row.stored += 1
                if dial_state == dispatcher_pb2.DIAL_STATE_BLOCKED:
                    row.blocked += 1
                    for reason in decision_pb2.Decision.FromString(decision_raw).reasons:
                        row.blocked_by_reason[reason.rule_id] += 1
                elif dial_state == dispatcher_pb2.DIAL_STATE_DEFERRED:
                    row.deferred += 1
            for t, src, n in s.execute(dups):
                stat(t, src).duplicates += int(n)
        for row in stats.values():
            row.received = row.stored + row.duplicates
        return [stats[k] for k in sorted(stats)]

    def call_stats(self, tenant: str, window_seconds: int) -> list[admin_pb2.CallStat]:
        since = utcnow() - timedelta(seconds=window_seconds)
        query = sa.select(
            DialAttemptRow.tenant,
            DialAttemptRow.call_status,
            DialAttemptRow.duration_seconds,
            DialAttemptRow.price_usd,
        ).where(DialAttemptRow.dialed_at.is_not(None), DialAttemptRow.dialed_at >= since)
        if tenant:
            query = query.where(DialAttemptRow.tenant == tenant)
        acc: dict[tuple[str, str], dict[str, Any]] = defaultdict(
            lambda: {"placed": 0, "answered": 0, "duration": 0, "cost": Decimal(0)}
        )
        with self.sessions() as s:
            for t, status, duration, price in s.execute(query):
                a = acc[(t, status or "in-progress")]
                a["placed"] += 1
                a["duration"] += int(duration or 0)
                a["cost"] += _decimal(price)
                if status == "completed" and (duration or 0) > 0:
                    a["answered"] += 1
        return [
            admin_pb2.CallStat(
                tenant=t,
                outcome=outcome,
                placed=a["placed"],
                answered=a["answered"],
                total_duration_seconds=a["duration"],
                mean_duration_seconds=a["duration"] / a["placed"] if a["placed"] else 0.0,
                cost_usd=str(a["cost"]),
            )
            for (t, outcome), a in sorted(acc.items())
        ]

    def queue_backlog(self) -> tuple[dict[str, int], dict[str, int]]:
        """(outbox jobs pending per queue, open dead letters per queue)."""
        with self.sessions() as s:
            pending = {
                q: int(n)
                for q, n in s.execute(
                    sa.select(JobRow.queue, sa.func.count())
                    .where(JobRow.state == "pending", JobRow.kind.not_in(SETTLE_KINDS))
                    .group_by(JobRow.queue)
                )
            }
            dead = {
                q: int(n)
                for q, n in s.execute(
                    sa.select(DeadLetterRow.queue, sa.func.count())
                    .where(DeadLetterRow.state == "open")
                    .group_by(DeadLetterRow.queue)
                )
            }
        return pending, dead

    def audit(
        self, actor: str, action: str, target: str, tenant: str, reason: str, detail: dict[str, Any]
    ) -> None:
        with self.sessions.begin() as s:
            s.add(
                AdminAuditRow(
                    at=utcnow(),
                    actor=actor,
                    action=action,
                    target=target,
                    tenant=tenant,
                    reason=reason,
                    detail=detail,
                )
            )

    def audit_entries(self, tenant: str, limit: int) -> list[admin_pb2.AdminAuditEntry]:
        query = sa.select(AdminAuditRow).order_by(AdminAuditRow.id.desc()).limit(limit or 100)
        if tenant:
            query = query.where(AdminAuditRow.tenant == tenant)
        with self.sessions() as s:
            out = []
            for row in s.scalars(query):
                entry = admin_pb2.AdminAuditEntry(
                    actor=row.actor,
                    action=row.action,
                    target=row.target,
                    tenant=row.tenant,
                    reason=row.reason,
                    detail_json=json.dumps(row.detail or {}, sort_keys=True),
                )
                entry.at.CopyFrom(to_proto(row.at))
                out.append(entry)
            return out

    def search_leads(
        self, tenant: str, keys: PersonKeys, lead_id: str, limit: int
    ) -> list[admin_pb2.LeadSummary]:
        query = sa.select(LeadRow).where(LeadRow.tenant == tenant)
        if lead_id:
            query = query.where(LeadRow.id == lead_id)
        if keys.phone:
            query = query.where(LeadRow.person_phone == keys.phone)
        if keys.email:
            query = query.where(LeadRow.person_email == keys.email)
        with self.sessions() as s:
            out = []
            for row in s.scalars(query.order_by(LeadRow.created_at.desc()).limit(limit or 50)):
                lead = lead_pb2.Lead.FromString(row.lead_pb)
                item = admin_pb2.LeadSummary(
                    lead_id=row.id,
                    tenant=row.tenant,
                    source=row.source,
                    urgency=row.urgency,
                    dial_state=dispatcher_pb2.DialState.Name(row.dial_state),  # type: ignore[arg-type]
                    phone=mask_phone(lead.contact.phone.e164) if lead.contact.phone.e164 else "",
                    email=mask_email(lead.contact.email) if lead.contact.email else "",
                )
                item.received_at.CopyFrom(to_proto(row.received_at))
                out.append(item)
            return out

"""Leads and their timelines: idempotent storage with the outbox jobs, reads, worker reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadflow.v1 import decision_pb2, dispatcher_pb2, lead_pb2
from leadflow_core.clock import now as utcnow
from leadflow_core.timestamps import from_proto, to_proto
from leadflow_dispatcher import scheduling
from leadflow_dispatcher.attempts import IN_FLIGHT
from leadflow_dispatcher.events import add_event
from leadflow_dispatcher.models import (
    DialAttemptRow,
    EventRow,
    JobRow,
    LeadRow,
)
from leadflow_dispatcher.person_order import (
    ORDERED_KINDS,
    PersonOrderStore,
    SubmitResult,
    duplicate_result,
)
from leadflow_dispatcher.persons import PersonKeys, campaign_of
from leadflow_dispatcher.policies import PolicyView
from leadflow_dispatcher.repository import (
    DONE_EVENTS,
    JOB_DONE_NAMES,
    LIVE_JOB_STATES,
    event_row,
    job_row,
    job_spec,
    new_id,
    source_of,
)
from leadflow_dispatcher.reviews import review_row


class SubmitReads(Protocol):
    """What storing a new lead reads: per lead (`PerLeadReads`) or once for a whole batch
    (`batch_reads.BatchReads`); `stored` tells it about the lead just added."""

    def joinable_lead(
        self, tenant: str, keys: PersonKeys, now: datetime, window: float
    ) -> LeadRow | None: ...

    def next_order_seq(self, tenant: str, order_key: str) -> int: ...

    def held_kinds(self, tenant: str, order_key: str) -> set[str]: ...

    def stored(self, row: LeadRow, jobs: Sequence[JobRow]) -> None: ...


@dataclass(frozen=True)
class PerLeadReads:
    """The single-lead path's reads: a query each, seeing what the transaction flushed."""

    store: LeadStore
    s: Session

    def joinable_lead(self, tenant: str, keys: PersonKeys, now: datetime, window: float) -> LeadRow | None:
        lead_id = self.store._joinable_lead(self.s, tenant, keys, now, window)
        return self.s.get(LeadRow, lead_id) if lead_id else None

    def next_order_seq(self, tenant: str, order_key: str) -> int:
        return self.store._next_order_seq(self.s, tenant, order_key)

    def held_kinds(self, tenant: str, order_key: str) -> set[str]:
        return self.store._held_kinds(self.s, tenant, order_key)

    def stored(self, row: LeadRow, jobs: Sequence[JobRow]) -> None:
        """Nothing to keep: the next lead's queries read the flushed rows."""


class LeadStore(PersonOrderStore):
    # ---- leads -------------------------------------------------------------------------

    def _find_duplicate(self, s: Session, lead: lead_pb2.Lead, source: str) -> LeadRow | None:
        clauses = []
        if lead.vendor_lead_id:
            clauses.append(sa.and_(LeadRow.source == source, LeadRow.vendor_lead_id == lead.vendor_lead_id))
        if lead.idempotency_key:
            clauses.append(LeadRow.idempotency_key == lead.idempotency_key)
        if not clauses:
            return None
        # When the vendor's id and the idempotency key name different stored leads, the same one
        # must win every time (batch or one by one): the vendor's own id first, then the oldest.
        by_vendor = clauses[0] if lead.vendor_lead_id else sa.false()
        row = s.scalars(
            sa.select(LeadRow)
            .where(LeadRow.tenant == lead.tenant, sa.or_(*clauses))
            .order_by(sa.case((by_vendor, 0), else_=1), LeadRow.created_at, LeadRow.id)
            .limit(1)
        ).first()
        return row if row is not None else self._alias_of(s, lead, source)

    def _joinable_lead(self, s: Session, tenant: str, keys: PersonKeys, now: datetime, window: float) -> str:
        """An earlier lead of this person with a dial still to come or placed recently."""
        if not keys.any:
            return ""
        # The person's leads first, as a list: with the IN-subquery form PostgreSQL (planning on
        # the stats of a young, fast-growing table) scanned every live job by state on each
        # submit, which dominated its CPU under load. A literal list uses the (tenant, lead_id)
        # unique indexes of jobs and attempts whatever the statistics say.
        person_leads = list(
            s.scalars(
                sa.select(LeadRow.id).where(
                    LeadRow.tenant == tenant, self._person_clause(keys), LeadRow.joined_lead_id.is_(None)
                )
            )
        )
        if not person_leads:
            return ""
        pending = s.scalars(
            sa.select(JobRow.lead_id)
            .where(
                JobRow.tenant == tenant,
                JobRow.lead_id.in_(person_leads),
                JobRow.kind == "dial",
                JobRow.state.in_(LIVE_JOB_STATES),
            )
            .limit(1)
        ).first()
        if pending:
            return pending
        recent = s.scalars(
            sa.select(DialAttemptRow.lead_id)
            .where(
                DialAttemptRow.tenant == tenant,
                DialAttemptRow.lead_id.in_(person_leads),
                sa.or_(
                    DialAttemptRow.state.in_(IN_FLIGHT),
                    DialAttemptRow.dialed_at >= now - timedelta(seconds=window),
                ),
            )
            .limit(1)
        ).first()
        return recent or ""

    def submit(
        self,
        lead: lead_pb2.Lead,
        decision: decision_pb2.Decision,
        keys: PersonKeys,
        policy: PolicyView,
        deployment_delays: dict[str, int],
        request_id: str,
        join_window_seconds: float,
        horizon_seconds: float,
        lease_seconds: float,
    ) -> SubmitResult:
        """Store lead, decision, timeline and outbox jobs in one transaction; idempotent.

        Jobs due within `horizon_seconds` are written as queued (with a lease) and returned for
        the caller to enqueue right after the commit; if that enqueue never happens, the lease
        runs out and the relay enqueues them.
        """
        source = scheduling.source_name(lead.source)
        try:
            with self.sessions.begin() as s:
                existing = self._find_duplicate(s, lead, source)
                if existing is not None:
                    # Counted by the admin lead statistics; the timeline shows redeliveries.
                    s.add(
                        event_row(
                            existing.tenant, existing.id, "duplicate_received", {}, request_id, utcnow()
                        )
                    )
                    return self._duplicate_result(existing)
                if self.postgres and keys.any:
                    # Serialise leads about one person so two of them cannot both start a call,
                    # merge twice, or take the same place in the person's order.
                    for lock_id in keys.lock_ids():
                        s.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id})
                    # The same lead may have been stored or merged while we waited.
                    existing = self._find_duplicate(s, lead, source)
                    if existing is not None:
                        return self._duplicate_result(existing)
                target = self._merge_target(s, lead, keys, utcnow(), policy.merge_window_seconds)
                if target is not None:
                    return self._merge_into(s, target, lead, keys, source, request_id, utcnow())
                return self._insert_lead(
                    s,
                    lead,
                    decision,
                    keys,
                    policy,
                    deployment_delays,
                    request_id,
                    join_window_seconds,
                    horizon_seconds,
                    lease_seconds,
                )
        except IntegrityError:
            # A concurrent submit of the same lead won the race: answer as a duplicate.
            with self.sessions() as s:
                existing = self._find_duplicate(s, lead, source)
                if existing is None:
                    raise
                return self._duplicate_result(existing)

    def _duplicate_result(self, row: LeadRow) -> SubmitResult:
        return duplicate_result(row)

    def _insert_lead(
        self,
        s: Session,
        lead: lead_pb2.Lead,
        decision: decision_pb2.Decision,
        keys: PersonKeys,
        policy: PolicyView,
        deployment_delays: dict[str, int],
        request_id: str,
        join_window_seconds: float,
        horizon_seconds: float,
        lease_seconds: float,
        flush: bool = True,
        reads: SubmitReads | None = None,
    ) -> SubmitResult:
        """`flush=False` leaves the rows pending, so a batch writes all its leads' rows in a few
        multi-row INSERTs when it flushes; `reads`: the batch's, else a query per read."""
        reads = reads or PerLeadReads(self, s)
        now = utcnow()
        lead_id = new_id()
        tenant = lead.tenant
        urgency = scheduling.urgency_name(lead.urgency)
        stored = lead_pb2.Lead()
        stored.CopyFrom(lead)
        stored.lead_id = lead_id
        if not stored.HasField("received_at"):
            stored.received_at.CopyFrom(to_proto(now))
        received_at = from_proto(stored.received_at) or now
        vendor_at = from_proto(lead.vendor_updated_at)
        delay = scheduling.dial_delay_seconds(urgency, policy.dial_delay_seconds, deployment_delays)
        plan = scheduling.plan_dial(decision, lead.is_test, now, delay)
        reasons = list(decision.reasons)
        other = (
            reads.joinable_lead(tenant, keys, now, join_window_seconds) if plan.due_at is not None else None
        )
        joined = other.id if other is not None else ""
        dial_state, dial_at = plan.state, plan.due_at
        if other is not None:
            dial_state, dial_at = other.dial_state, other.dial_at
            reasons.append(
                decision_pb2.Reason(
                    rule_id="dispatch.joined_existing_call",
                    message="this person already has a pending or recent call; the lead joins it",
                    action=decision_pb2.DIAL_ACTION_NEVER,
                )
            )
        campaign = campaign_of(lead)
        order_key = keys.order_key(campaign)
        order_seq = reads.next_order_seq(tenant, order_key) if order_key else None
        held = reads.held_kinds(tenant, order_key) if order_key else set()
        row = LeadRow(
            id=lead_id,
            tenant=tenant,
            source=source_of(lead),
            vendor_lead_id=lead.vendor_lead_id or None,
            idempotency_key=lead.idempotency_key or None,
            person_phone=keys.phone,
            person_email=keys.email,
            urgency=urgency,
            lead_pb=stored.SerializeToString(),
            decision_pb=decision.SerializeToString(),
            dial_state=dial_state,
            dial_at=dial_at,
            joined_lead_id=joined or None,
            vendor_updated_at=vendor_at,
            version_at=vendor_at or received_at,
            enrichment=None,
            request_id=request_id,
            received_at=received_at,
            created_at=now,
            campaign=campaign or None,
            order_key=order_key,
            order_seq=order_seq,
        )
        s.add(row)
        action = decision_pb2.DialAction.Name(decision.action)
        events = [
            event_row(
                tenant, lead_id, "received", {"source": source_of(lead), "urgency": urgency}, request_id, now
            ),
            event_row(
                tenant,
                lead_id,
                "decided",
                {
                    "action": action,
                    "decision_id": decision.decision_id,
                    "reasons": [r.rule_id for r in decision.reasons],
                    "not_before": dial_at.isoformat() if dial_at else None,
                },
                request_id,
                now,
            ),
        ]
        jobs = [
            job_row(tenant, lead_id, "enrich", "enrich", now, request_id, now),
            job_row(tenant, lead_id, "crm_sync", "crm_sync", now, request_id, now),
        ]
        if joined:
            events.append(event_row(tenant, lead_id, "joined", {"lead_id": joined}, request_id, now))
        elif plan.due_at is not None:
            kind = "dial_deferred" if plan.state == dispatcher_pb2.DIAL_STATE_DEFERRED else "dial_scheduled"
            events.append(event_row(tenant, lead_id, kind, {"at": plan.due_at.isoformat()}, request_id, now))
            jobs.append(
                job_row(tenant, lead_id, "dial", f"dial.{urgency}", plan.due_at, request_id, now, attempt=1)
            )
        else:
            events.append(event_row(tenant, lead_id, "dial_blocked", {"action": action}, request_id, now))
        for job in jobs:
            if job.kind in ORDERED_KINDS:
                job.order_key, job.order_seq = order_key, order_seq
        # A kind an earlier lead of this person and campaign still has pending waits for the
        # relay, which sends it once that earlier job is finished (arrival order).
        immediate = [
            j for j in jobs if j.due_at <= now + timedelta(seconds=horizon_seconds) and j.kind not in held
        ]
        for job in immediate:
            job.state = "queued"
            job.lease_until = job.due_at + timedelta(seconds=lease_seconds)
            job.enqueue_count = 1
        if decision.needs_review:
            s.add(review_row(tenant, lead_id, decision, source_of(lead), now))
        stored_data = {"lead_id": lead_id, "source": source_of(lead), "urgency": urgency, "action": action}
        add_event(s, policy, tenant, "lead.stored", lead_id, stored_data, now)
        if dial_state == dispatcher_pb2.DIAL_STATE_BLOCKED:
            reasons_ids = [r.rule_id for r in decision.reasons]
            add_event(
                s, policy, tenant, "lead.refused", lead_id, {**stored_data, "reasons": reasons_ids}, now
            )
        s.add_all(events)
        s.add_all(jobs)
        reads.stored(row, jobs)
        if flush:
            s.flush()
        return SubmitResult(
            lead_id=lead_id,
            duplicate=False,
            dial_state=dial_state,
            dial_at=dial_at,
            reasons=reasons,
            joined_lead_id=joined,
            jobs=[(job_spec(j), max(0.0, (j.due_at - now).total_seconds())) for j in immediate],
        )

    def get_lead(self, tenant: str, lead_id: str) -> dispatcher_pb2.GetLeadResponse:
        with self.sessions() as s:
            row = self._lead(s, tenant, lead_id)
            done = s.scalars(
                sa.select(JobRow.kind).where(
                    JobRow.tenant == tenant, JobRow.lead_id == lead_id, JobRow.state == "done"
                )
            ).all()
            superseded = ""
            keys = PersonKeys(phone=row.person_phone, email=row.person_email)
            if keys.any:
                superseded = (
                    s.scalars(
                        sa.select(LeadRow.id)
                        .where(
                            LeadRow.tenant == tenant,
                            LeadRow.id != lead_id,
                            self._person_clause(keys),
                            LeadRow.version_at > row.version_at,
                        )
                        .order_by(LeadRow.version_at.desc())
                        .limit(1)
                    ).first()
                    or ""
                )
            return dispatcher_pb2.GetLeadResponse(
                lead=lead_pb2.Lead.FromString(row.lead_pb),
                decision=decision_pb2.Decision.FromString(row.decision_pb),
                dial_state=row.dial_state,  # type: ignore[arg-type]
                dial_at=to_proto(row.dial_at) if row.dial_at else None,
                work_done=sorted({JOB_DONE_NAMES[k] for k in done if k in JOB_DONE_NAMES}),
                enrichment_json=json.dumps(row.enrichment) if row.enrichment else "",
                superseded_by=superseded,
                joined_lead_id=row.joined_lead_id or "",
                request_id=row.request_id,
            )

    def timeline(self, tenant: str, lead_id: str) -> dispatcher_pb2.GetTimelineResponse:
        with self.sessions() as s:
            row = self._lead(s, tenant, lead_id)
            events = s.scalars(
                sa.select(EventRow)
                .where(EventRow.tenant == tenant, EventRow.lead_id == lead_id)
                .order_by(EventRow.id)
            ).all()
            return dispatcher_pb2.GetTimelineResponse(
                events=[
                    dispatcher_pb2.TimelineEvent(
                        at=to_proto(e.at),
                        kind=e.kind,
                        detail_json=json.dumps(e.detail),
                        request_id=e.request_id,
                    )
                    for e in events
                ],
                dial_state=row.dial_state,  # type: ignore[arg-type]
            )

    # ---- worker reports ----------------------------------------------------------------

    def record_event(
        self,
        tenant: str,
        lead_id: str,
        kind: str,
        detail: dict[str, Any],
        dedupe_key: str,
        request_id: str,
        next_attempt_at: datetime | None,
        lease_seconds: float,
    ) -> bool:
        now = utcnow()
        try:
            with self.sessions.begin() as s:
                row = self._lead(s, tenant, lead_id)
                s.add(event_row(tenant, lead_id, kind, detail, request_id, now, dedupe_key or None))
                s.flush()
                job_kind = DONE_EVENTS.get(kind)
                if job_kind is not None:
                    s.execute(
                        sa.update(JobRow)
                        .where(
                            JobRow.tenant == tenant,
                            JobRow.lead_id == lead_id,
                            JobRow.kind == job_kind,
                            JobRow.state.in_((*LIVE_JOB_STATES, "dead")),
                        )
                        .values(state="done", updated_at=now)
                    )
                if kind == "enriched":
                    row.enrichment = detail
                if next_attempt_at is not None and detail.get("job"):
                    # The worker still holds the job (retrying, or held by a circuit breaker):
                    # the sweeper must not enqueue a second copy before it is due again.
                    s.execute(
                        sa.update(JobRow)
                        .where(
                            JobRow.tenant == tenant,
                            JobRow.lead_id == lead_id,
                            JobRow.kind == str(detail["job"]),
                            JobRow.attempt == int(detail.get("attempt", 1)),
                            JobRow.state == "queued",
                        )
                        .values(
                            lease_until=next_attempt_at + timedelta(seconds=lease_seconds), updated_at=now
                        )
                    )
            return True
        except IntegrityError:
            return False

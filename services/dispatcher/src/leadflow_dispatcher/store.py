"""The dispatcher's repository: every read and write of its tables, each scoped by tenant.

Times come from the service clock (`leadflow_core.clock`), the one compliance decides with, so
a deferral's instant and our "due" comparisons agree.

Methods take and return protos or small dataclasses; transactions live here, rules live in
`scheduling`, and queueing lives in `relay`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from leadflow.v1 import decision_pb2, dispatcher_pb2, lead_pb2
from leadflow_core.clock import now as utcnow
from leadflow_core.timestamps import as_utc, from_proto, to_proto
from leadflow_dispatcher import scheduling
from leadflow_dispatcher.models import (
    CallStatusRow,
    DeadLetterRow,
    DialAttemptRow,
    EventRow,
    JobRow,
    LeadRow,
)
from leadflow_dispatcher.persons import PersonKeys
from leadflow_dispatcher.policies import PolicyView
from leadflow_dispatcher.queueing import JobSpec

# Event kinds reported by workers that finish a job of the given kind.
DONE_EVENTS = {"enriched": "enrich", "synced": "crm_sync"}
JOB_DONE_NAMES = {v: k for k, v in DONE_EVENTS.items()}
# Jobs the relay hands to Dramatiq (the rest are done by the dispatcher itself).
BROKER_KINDS = ("enrich", "crm_sync", "dial", "call_status")
LIVE_JOB_STATES = ("pending", "queued")


def new_id() -> str:
    return uuid.uuid4().hex


class NotFound(Exception):
    pass


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


@dataclass
class ClaimResult:
    claimed: bool
    attempt_id: str
    state: str
    lead: lead_pb2.Lead
    resumed: bool = False
    tries: int = 0


@dataclass(frozen=True)
class ExpiredJob:
    job_id: str
    broker_queue: str
    broker_message_id: str
    age_seconds: float


@dataclass(frozen=True)
class SettleWork:
    job_id: str
    tenant: str
    reservation_id: str
    status: str
    duration_seconds: int
    price_usd: str


def job_spec(row: JobRow) -> JobSpec:
    return JobSpec(
        job_id=row.id,
        tenant=row.tenant,
        lead_id=row.lead_id,
        kind=row.kind,
        attempt=row.attempt,
        queue=row.queue,
        request_id=row.request_id,
        payload=dict(row.payload or {}),
    )


def _event(
    tenant: str,
    lead_id: str,
    kind: str,
    detail: dict[str, Any],
    request_id: str,
    at: datetime,
    dedupe_key: str | None = None,
) -> EventRow:
    return EventRow(
        tenant=tenant,
        lead_id=lead_id,
        kind=kind,
        detail=detail,
        request_id=request_id,
        at=at,
        dedupe_key=dedupe_key,
    )


def _job(
    tenant: str,
    lead_id: str,
    kind: str,
    queue: str,
    due_at: datetime,
    request_id: str,
    now: datetime,
    attempt: int = 1,
    payload: dict[str, Any] | None = None,
) -> JobRow:
    return JobRow(
        id=new_id(),
        tenant=tenant,
        lead_id=lead_id,
        kind=kind,
        attempt=attempt,
        queue=queue,
        state="pending",
        due_at=due_at,
        lease_until=None,
        enqueue_count=0,
        broker_queue="",
        broker_message_id="",
        enqueued_at=None,
        payload=payload or {},
        request_id=request_id,
        last_error="",
        updated_at=now,
    )


class Store:
    def __init__(self, sessions: sessionmaker[Session], *, postgres: bool) -> None:
        self.sessions = sessions
        self.postgres = postgres

    # ---- leads -------------------------------------------------------------------------

    def _find_duplicate(self, s: Session, lead: lead_pb2.Lead, source: str) -> LeadRow | None:
        clauses = []
        if lead.vendor_lead_id:
            clauses.append(sa.and_(LeadRow.source == source, LeadRow.vendor_lead_id == lead.vendor_lead_id))
        if lead.idempotency_key:
            clauses.append(LeadRow.idempotency_key == lead.idempotency_key)
        if not clauses:
            return None
        return s.scalars(
            sa.select(LeadRow).where(LeadRow.tenant == lead.tenant, sa.or_(*clauses)).limit(1)
        ).first()

    def _person_clause(self, keys: PersonKeys) -> sa.ColumnElement[bool]:
        clauses = []
        if keys.phone:
            clauses.append(LeadRow.person_phone == keys.phone)
        if keys.email:
            clauses.append(LeadRow.person_email == keys.email)
        return sa.or_(*clauses)

    def _joinable_lead(self, s: Session, tenant: str, keys: PersonKeys, now: datetime, window: float) -> str:
        """An earlier lead of this person with a dial still to come or placed recently."""
        if not keys.any:
            return ""
        person_leads = sa.select(LeadRow.id).where(
            LeadRow.tenant == tenant, self._person_clause(keys), LeadRow.joined_lead_id.is_(None)
        )
        pending = s.scalars(
            sa.select(JobRow.lead_id)
            .where(
                JobRow.tenant == tenant,
                JobRow.kind == "dial",
                JobRow.state.in_(LIVE_JOB_STATES),
                JobRow.lead_id.in_(person_leads),
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
                    DialAttemptRow.state == "claimed",
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
                    return self._duplicate_result(existing)
                if self.postgres and keys.any:
                    # Serialise leads about one person so two of them cannot both start a call.
                    s.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": keys.lock_id()})
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
        decision = decision_pb2.Decision.FromString(row.decision_pb)
        return SubmitResult(
            lead_id=row.id,
            duplicate=True,
            dial_state=row.dial_state,
            dial_at=row.dial_at,
            reasons=list(decision.reasons),
            joined_lead_id=row.joined_lead_id or "",
        )

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
    ) -> SubmitResult:
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
        joined = ""
        if plan.due_at is not None:
            joined = self._joinable_lead(s, tenant, keys, now, join_window_seconds)
        dial_state, dial_at = plan.state, plan.due_at
        if joined:
            other = s.get(LeadRow, joined)
            assert other is not None
            dial_state, dial_at = other.dial_state, other.dial_at
            reasons.append(
                decision_pb2.Reason(
                    rule_id="dispatch.joined_existing_call",
                    message="this person already has a pending or recent call; the lead joins it",
                    action=decision_pb2.DIAL_ACTION_NEVER,
                )
            )
        s.add(
            LeadRow(
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
            )
        )
        action = decision_pb2.DialAction.Name(decision.action)
        events = [
            _event(
                tenant, lead_id, "received", {"source": source_of(lead), "urgency": urgency}, request_id, now
            ),
            _event(
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
            _job(tenant, lead_id, "enrich", "enrich", now, request_id, now),
            _job(tenant, lead_id, "crm_sync", "crm_sync", now, request_id, now),
        ]
        if joined:
            events.append(_event(tenant, lead_id, "joined", {"lead_id": joined}, request_id, now))
        elif plan.due_at is not None:
            kind = "dial_deferred" if plan.state == dispatcher_pb2.DIAL_STATE_DEFERRED else "dial_scheduled"
            events.append(_event(tenant, lead_id, kind, {"at": plan.due_at.isoformat()}, request_id, now))
            jobs.append(
                _job(tenant, lead_id, "dial", f"dial.{urgency}", plan.due_at, request_id, now, attempt=1)
            )
        else:
            events.append(_event(tenant, lead_id, "dial_blocked", {"action": action}, request_id, now))
        immediate = [j for j in jobs if j.due_at <= now + timedelta(seconds=horizon_seconds)]
        for job in immediate:
            job.state = "queued"
            job.lease_until = job.due_at + timedelta(seconds=lease_seconds)
            job.enqueue_count = 1
        s.add_all(events)
        s.add_all(jobs)
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

    def _lead(self, s: Session, tenant: str, lead_id: str) -> LeadRow:
        row = s.get(LeadRow, lead_id) if lead_id else None
        if row is None or row.tenant != tenant:
            raise NotFound(lead_id)
        return row

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
                s.add(_event(tenant, lead_id, kind, detail, request_id, now, dedupe_key or None))
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

    # ---- dial attempts -----------------------------------------------------------------

    def claim(
        self, tenant: str, lead_id: str, attempt: int, stale_seconds: float, request_id: str
    ) -> ClaimResult:
        now = utcnow()
        with self.sessions.begin() as s:
            lead_row = self._lead(s, tenant, lead_id)
            lead = lead_pb2.Lead.FromString(lead_row.lead_pb)
            job = s.scalars(
                sa.select(JobRow).where(
                    JobRow.tenant == tenant,
                    JobRow.lead_id == lead_id,
                    JobRow.kind == "dial",
                    JobRow.attempt == attempt,
                )
            ).first()
            if job is None or job.state in ("cancelled", "done"):
                return ClaimResult(False, "", job.state if job else "unknown", lead)
            current = s.scalars(
                sa.select(DialAttemptRow).where(
                    DialAttemptRow.tenant == tenant,
                    DialAttemptRow.lead_id == lead_id,
                    DialAttemptRow.attempt == attempt,
                )
            ).first()
        if current is None:
            attempt_id = new_id()
            try:
                with self.sessions.begin() as s:
                    s.add(
                        DialAttemptRow(
                            id=attempt_id,
                            tenant=tenant,
                            lead_id=lead_id,
                            attempt=attempt,
                            state="claimed",
                            tries=1,
                            claimed_at=now,
                        )
                    )
                    s.flush()
                    self._mark_dialing(s, tenant, lead_id, attempt_id, attempt, 1, request_id, now)
            except IntegrityError:
                return ClaimResult(False, "", "claimed", lead)
            return ClaimResult(True, attempt_id, "claimed", lead, tries=1)
        resumable = current.state in ("failed", "deferred") or (
            current.state == "claimed" and as_utc(current.claimed_at) < now - timedelta(seconds=stale_seconds)
        )
        if not resumable:
            return ClaimResult(False, current.id, current.state, lead, tries=current.tries)
        with self.sessions.begin() as s:
            # Compare-and-set on the row's state and claim time: one claimant wins.
            won = s.execute(
                sa.update(DialAttemptRow)
                .where(
                    DialAttemptRow.id == current.id,
                    DialAttemptRow.state == current.state,
                    DialAttemptRow.claimed_at == current.claimed_at,
                )
                .values(state="claimed", claimed_at=now, tries=current.tries + 1, error="")
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                return ClaimResult(False, current.id, "claimed", lead, tries=current.tries)
            self._mark_dialing(s, tenant, lead_id, current.id, attempt, current.tries + 1, request_id, now)
        return ClaimResult(
            True, current.id, "claimed", lead, resumed=current.state == "claimed", tries=current.tries + 1
        )

    def _mark_dialing(
        self,
        s: Session,
        tenant: str,
        lead_id: str,
        attempt_id: str,
        attempt: int,
        tries: int,
        request_id: str,
        now: datetime,
    ) -> None:
        s.execute(
            sa.update(LeadRow)
            .where(LeadRow.tenant == tenant, LeadRow.id == lead_id)
            .values(dial_state=dispatcher_pb2.DIAL_STATE_DIALING)
        )
        s.add(
            _event(
                tenant,
                lead_id,
                "dialing",
                {"attempt": attempt, "attempt_id": attempt_id, "try": tries},
                request_id,
                now,
                f"dialing:{attempt_id}:{tries}",
            )
        )

    def _attempt(self, s: Session, tenant: str, attempt_id: str) -> DialAttemptRow:
        row = s.get(DialAttemptRow, attempt_id) if attempt_id else None
        if row is None or row.tenant != tenant:
            raise NotFound(attempt_id)
        return row

    def complete(
        self,
        tenant: str,
        attempt_id: str,
        provider_call_id: str,
        provider: str,
        reservation_id: str,
        error: str,
        request_id: str,
        policy: PolicyView,
    ) -> None:
        now = utcnow()
        with self.sessions.begin() as s:
            row = self._attempt(s, tenant, attempt_id)
            if row.state in ("dialed", "ended"):
                return  # a redelivered report
            row.provider = provider
            if reservation_id:
                row.reservation_id = reservation_id
            if not provider_call_id:
                row.state = "failed"
                row.error = error[:2000]
                s.execute(
                    sa.update(LeadRow)
                    .where(LeadRow.tenant == tenant, LeadRow.id == row.lead_id)
                    .values(dial_state=dispatcher_pb2.DIAL_STATE_SCHEDULED)
                )
                s.add(
                    _event(
                        tenant,
                        row.lead_id,
                        "dial_failed",
                        {
                            "attempt": row.attempt,
                            "try": row.tries,
                            "provider": provider,
                            "error": error[:500],
                        },
                        request_id,
                        now,
                        f"dial_failed:{attempt_id}:{row.tries}",
                    )
                )
                if reservation_id:
                    self._add_settle(s, row, "not-placed", 0, "", request_id, now)
                return
            row.state = "dialed"
            row.provider_call_id = provider_call_id
            row.dialed_at = now
            row.error = ""
            s.execute(
                sa.update(JobRow)
                .where(
                    JobRow.tenant == tenant,
                    JobRow.lead_id == row.lead_id,
                    JobRow.kind == "dial",
                    JobRow.attempt == row.attempt,
                )
                .values(state="done", updated_at=now)
            )
            s.execute(
                sa.update(LeadRow)
                .where(LeadRow.tenant == tenant, LeadRow.id == row.lead_id)
                .values(dial_state=dispatcher_pb2.DIAL_STATE_DIALED)
            )
            s.add(
                _event(
                    tenant,
                    row.lead_id,
                    "dialed",
                    {
                        "attempt": row.attempt,
                        "attempt_id": attempt_id,
                        "provider": provider,
                        "call_id": provider_call_id,
                    },
                    request_id,
                    now,
                    f"dialed:{attempt_id}",
                )
            )
            s.flush()
            # Callbacks that outran this report are applied now, in arrival order.
            early = s.scalars(
                sa.select(CallStatusRow)
                .where(
                    CallStatusRow.tenant == tenant,
                    CallStatusRow.provider_call_id == provider_call_id,
                    CallStatusRow.applied.is_(False),
                )
                .order_by(CallStatusRow.id)
            ).all()
            for status_row in early:
                self._apply_status(s, row, status_row, policy, request_id, now)

    def defer(
        self, tenant: str, lead_id: str, attempt_id: str, decision: decision_pb2.Decision, request_id: str
    ) -> tuple[int, datetime | None]:
        now = utcnow()
        with self.sessions.begin() as s:
            lead_row = self._lead(s, tenant, lead_id)
            attempt, tries = 1, 1
            if attempt_id:
                row = self._attempt(s, tenant, attempt_id)
                row.state = "deferred"
                attempt, tries = row.attempt, row.tries
            reasons = [r.rule_id for r in decision.reasons]
            if decision.action == decision_pb2.DIAL_ACTION_NEVER:
                state, at, job_state = dispatcher_pb2.DIAL_STATE_BLOCKED, None, "cancelled"
                kind = "dial_blocked"
            else:
                # Never sooner than compliance's instant, and never in a tight loop: a gate that
                # keeps refusing with an instant already past is asked again after a growing gap.
                at = max(from_proto(decision.not_before) or now, now + scheduling.defer_gap(tries))
                state, job_state, kind = dispatcher_pb2.DIAL_STATE_DEFERRED, "pending", "dial_deferred"
            s.execute(
                sa.update(JobRow)
                .where(
                    JobRow.tenant == tenant,
                    JobRow.lead_id == lead_id,
                    JobRow.kind == "dial",
                    JobRow.attempt == attempt,
                )
                .values(state=job_state, due_at=at or now, lease_until=None, updated_at=now)
            )
            lead_row.dial_state = state
            lead_row.dial_at = at
            s.add(
                _event(
                    tenant,
                    lead_id,
                    kind,
                    {"attempt": attempt, "at": at.isoformat() if at else None, "reasons": reasons},
                    request_id,
                    now,
                )
            )
            return state, at

    # ---- call status -------------------------------------------------------------------

    def record_call_status(
        self,
        tenant: str,
        provider_call_id: str,
        status: str,
        duration_seconds: int,
        price_usd: str,
        params: dict[str, str],
        request_id: str,
        policy_for: Any,
    ) -> tuple[bool, str]:
        now = utcnow()
        try:
            with self.sessions.begin() as s:
                status_row = CallStatusRow(
                    tenant=tenant,
                    provider_call_id=provider_call_id,
                    status=status,
                    duration_seconds=duration_seconds,
                    price_usd=price_usd,
                    params=params,
                    applied=False,
                    at=now,
                )
                s.add(status_row)
                s.flush()
                attempt = s.scalars(
                    sa.select(DialAttemptRow).where(
                        DialAttemptRow.tenant == tenant, DialAttemptRow.provider_call_id == provider_call_id
                    )
                ).first()
                if attempt is None:
                    # The callback outran CompleteDialAttempt; it is applied when that arrives.
                    return True, ""
                self._apply_status(s, attempt, status_row, policy_for(tenant), request_id, now)
                return True, attempt.lead_id
        except IntegrityError:
            with self.sessions() as s:
                lead_id = s.scalars(
                    sa.select(DialAttemptRow.lead_id).where(
                        DialAttemptRow.tenant == tenant, DialAttemptRow.provider_call_id == provider_call_id
                    )
                ).first()
            return False, lead_id or ""

    def _apply_status(
        self,
        s: Session,
        attempt: DialAttemptRow,
        status_row: CallStatusRow,
        policy: PolicyView,
        request_id: str,
        now: datetime,
    ) -> None:
        status_row.applied = True
        status = status_row.status
        s.add(
            _event(
                attempt.tenant,
                attempt.lead_id,
                "call_status",
                {
                    "attempt": attempt.attempt,
                    "call_id": attempt.provider_call_id,
                    "status": status,
                    "duration_seconds": status_row.duration_seconds,
                    "price_usd": status_row.price_usd,
                },
                request_id,
                now,
            )
        )
        if attempt.state == "ended":
            return  # a late progress callback after the final one changes nothing
        attempt.call_status = status
        if status not in scheduling.FINAL_CALL_STATUSES:
            return
        attempt.state = "ended"
        attempt.ended_at = now
        attempt.duration_seconds = status_row.duration_seconds
        attempt.price_usd = status_row.price_usd
        if attempt.reservation_id:
            self._add_settle(
                s, attempt, status, status_row.duration_seconds, status_row.price_usd, request_id, now
            )
        retry_at = scheduling.next_call_attempt_at(
            status, attempt.attempt, policy.max_dial_attempts, policy.retry_backoff_seconds, now
        )
        lead_row = s.get(LeadRow, attempt.lead_id)
        if retry_at is None or lead_row is None:
            return
        s.add(
            _job(
                attempt.tenant,
                attempt.lead_id,
                "dial",
                f"dial.{lead_row.urgency}",
                retry_at,
                request_id,
                now,
                attempt=attempt.attempt + 1,
            )
        )
        lead_row.dial_state = dispatcher_pb2.DIAL_STATE_SCHEDULED
        lead_row.dial_at = retry_at
        s.add(
            _event(
                attempt.tenant,
                attempt.lead_id,
                "dial_retry_scheduled",
                {"attempt": attempt.attempt + 1, "at": retry_at.isoformat(), "after": status},
                request_id,
                now,
            )
        )

    def _add_settle(
        self,
        s: Session,
        attempt: DialAttemptRow,
        status: str,
        duration: int,
        price: str,
        request_id: str,
        now: datetime,
    ) -> None:
        # One settle per reservation; a not-placed release and a later settle use distinct rows.
        exists = s.scalars(
            sa.select(JobRow.id).where(
                JobRow.tenant == attempt.tenant,
                JobRow.kind == "settle",
                JobRow.lead_id == attempt.lead_id,
                JobRow.attempt == attempt.attempt * 1000 + attempt.tries,
            )
        ).first()
        if exists:
            return
        s.add(
            _job(
                attempt.tenant,
                attempt.lead_id,
                "settle",
                "settle",
                now,
                request_id,
                now,
                attempt=attempt.attempt * 1000 + attempt.tries,
                payload={
                    "reservation_id": attempt.reservation_id,
                    "status": status,
                    "duration_seconds": duration,
                    "price_usd": price,
                },
            )
        )

    # ---- dead letters ------------------------------------------------------------------

    def record_dead_letter(self, dl: dispatcher_pb2.DeadLetter, request_id: str) -> dispatcher_pb2.DeadLetter:
        now = utcnow()
        dl_id = dl.dead_letter_id or new_id()
        with self.sessions.begin() as s:
            existing = s.get(DeadLetterRow, dl_id)
            if existing is not None:
                if existing.tenant != dl.tenant:
                    raise NotFound(dl_id)
                return dead_letter_proto(existing)
            row = DeadLetterRow(
                id=dl_id,
                tenant=dl.tenant,
                queue=dl.queue,
                lead_id=dl.lead_id,
                actor=dl.actor,
                job_kind=dl.job_kind,
                job_attempt=dl.job_attempt or 1,
                error_class=dl.error_class,
                error=dl.error[:4000],
                attempts=dl.attempts,
                state="open",
                note="",
                message_json=dl.message_json,
                failed_at=from_proto(dl.failed_at) or now,
                updated_at=now,
            )
            s.add(row)
            if dl.lead_id and dl.job_kind:
                s.execute(
                    sa.update(JobRow)
                    .where(
                        JobRow.tenant == dl.tenant,
                        JobRow.lead_id == dl.lead_id,
                        JobRow.kind == dl.job_kind,
                        JobRow.attempt == (dl.job_attempt or 1),
                        JobRow.state.in_(LIVE_JOB_STATES),
                    )
                    .values(state="dead", last_error=dl.error[:2000], updated_at=now)
                )
                s.add(
                    _event(
                        dl.tenant,
                        dl.lead_id,
                        "dead_lettered",
                        {
                            "queue": dl.queue,
                            "job": dl.job_kind,
                            "error_class": dl.error_class,
                            "attempts": dl.attempts,
                            "dead_letter_id": dl_id,
                        },
                        request_id,
                        now,
                    )
                )
            s.flush()
            return dead_letter_proto(row)

    def list_dead_letters(
        self, tenant: str, queue: str, state: str, limit: int
    ) -> list[dispatcher_pb2.DeadLetter]:
        with self.sessions() as s:
            q = sa.select(DeadLetterRow).where(DeadLetterRow.tenant == tenant)
            if queue:
                q = q.where(DeadLetterRow.queue == queue)
            if state != "all":
                q = q.where(DeadLetterRow.state == (state or "open"))
            rows = s.scalars(q.order_by(DeadLetterRow.failed_at.desc()).limit(limit or 100)).all()
            return [dead_letter_proto(r) for r in rows]

    def get_dead_letter(self, tenant: str, dl_id: str) -> dispatcher_pb2.DeadLetter:
        with self.sessions() as s:
            row = s.get(DeadLetterRow, dl_id) if dl_id else None
            if row is None or row.tenant != tenant:
                raise NotFound(dl_id)
            return dead_letter_proto(row)

    def replay_dead_letters(
        self, tenant: str, dl_id: str, queue: str, replay_all: bool, request_id: str, lease_seconds: float
    ) -> list[JobSpec]:
        """Reopen the dead letters' jobs; the returned jobs are enqueued by the caller."""
        now = utcnow()
        with self.sessions.begin() as s:
            q = sa.select(DeadLetterRow).where(DeadLetterRow.tenant == tenant, DeadLetterRow.state == "open")
            if dl_id:
                q = q.where(DeadLetterRow.id == dl_id)
            elif not replay_all:
                return []
            if queue:
                q = q.where(DeadLetterRow.queue == queue)
            rows = s.scalars(q.with_for_update()).all()
            if dl_id and not rows:
                raise NotFound(dl_id)
            jobs: list[JobSpec] = []
            for row in rows:
                row.state = "replayed"
                row.updated_at = now
                job = s.scalars(
                    sa.select(JobRow).where(
                        JobRow.tenant == tenant,
                        JobRow.lead_id == row.lead_id,
                        JobRow.kind == row.job_kind,
                        JobRow.attempt == row.job_attempt,
                    )
                ).first()
                if job is None or job.state == "done":
                    continue
                job.state = "queued"
                job.due_at = now
                job.lease_until = now + timedelta(seconds=lease_seconds)
                job.enqueue_count += 1
                job.updated_at = now
                s.add(
                    _event(
                        tenant,
                        row.lead_id,
                        "replayed",
                        {"dead_letter_id": row.id, "job": row.job_kind},
                        request_id,
                        now,
                    )
                )
                jobs.append(job_spec(job))
            return jobs

    def purge_dead_letters(self, tenant: str, queue: str) -> int:
        now = utcnow()
        with self.sessions.begin() as s:
            q = sa.update(DeadLetterRow).where(DeadLetterRow.tenant == tenant, DeadLetterRow.state == "open")
            if queue:
                q = q.where(DeadLetterRow.queue == queue)
            result = s.execute(q.values(state="purged", updated_at=now))
            return int(result.rowcount)  # type: ignore[attr-defined]

    def resolve_dead_letter(self, tenant: str, dl_id: str, note: str) -> dispatcher_pb2.DeadLetter:
        now = utcnow()
        with self.sessions.begin() as s:
            row = s.get(DeadLetterRow, dl_id) if dl_id else None
            if row is None or row.tenant != tenant:
                raise NotFound(dl_id)
            row.state = "resolved"
            row.note = note
            row.updated_at = now
            s.flush()
            return dead_letter_proto(row)

    # ---- the relay's queries -----------------------------------------------------------

    def claim_due_jobs(
        self, horizon_seconds: float, lease_seconds: float, limit: int
    ) -> list[tuple[JobSpec, float]]:
        """Pending jobs due within the horizon, marked queued with a lease; each with its delay."""
        now = utcnow()
        horizon = now + timedelta(seconds=horizon_seconds)
        with self.sessions.begin() as s:
            rows = s.scalars(
                sa.select(JobRow)
                .where(JobRow.kind.in_(BROKER_KINDS), JobRow.state == "pending", JobRow.due_at <= horizon)
                .order_by(JobRow.due_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            out: list[tuple[JobSpec, float]] = []
            for row in rows:
                due = as_utc(row.due_at)
                row.state = "queued"
                row.lease_until = max(due, now) + timedelta(seconds=lease_seconds)
                row.enqueue_count += 1
                row.updated_at = now
                out.append((job_spec(row), max(0.0, (due - now).total_seconds())))
            return out

    def note_enqueued(self, sent: Sequence[tuple[str, str, str]]) -> None:
        """Remember where each job's message went: (job id, broker queue, redis message id)."""
        if not sent:
            return
        now = utcnow()
        with self.sessions.begin() as s:
            s.execute(
                sa.update(JobRow),
                [
                    {"id": job_id, "broker_queue": queue, "broker_message_id": mid, "enqueued_at": now}
                    for job_id, queue, mid in sent
                ],
            )

    def expired_jobs(self, limit: int) -> list[ExpiredJob]:
        """Queued jobs whose lease ran out without a "done" report."""
        now = utcnow()
        with self.sessions() as s:
            rows = s.execute(
                sa.select(JobRow.id, JobRow.broker_queue, JobRow.broker_message_id, JobRow.enqueued_at)
                .where(
                    JobRow.kind.in_(BROKER_KINDS),
                    JobRow.state == "queued",
                    JobRow.lease_until.is_not(None),
                    JobRow.lease_until < now,
                )
                .limit(limit)
            ).all()
            return [
                ExpiredJob(
                    job_id=r[0],
                    broker_queue=r[1],
                    broker_message_id=r[2],
                    age_seconds=(now - as_utc(r[3])).total_seconds() if r[3] else float("inf"),
                )
                for r in rows
            ]

    def extend_leases(self, job_ids: Sequence[str], lease_seconds: float) -> None:
        if not job_ids:
            return
        now = utcnow()
        with self.sessions.begin() as s:
            s.execute(
                sa.update(JobRow)
                .where(JobRow.id.in_(job_ids), JobRow.state == "queued")
                .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
            )

    def resend(self, job_ids: Sequence[str]) -> None:
        """Lost work goes back to pending, due now: the next relay pass enqueues it again."""
        if not job_ids:
            return
        now = utcnow()
        with self.sessions.begin() as s:
            s.execute(
                sa.update(JobRow)
                .where(JobRow.id.in_(job_ids), JobRow.state == "queued")
                .values(state="pending", due_at=now, lease_until=None, last_error="resent", updated_at=now)
            )

    def release_jobs(self, jobs: Sequence[JobSpec], error: str) -> None:
        """The broker refused: back to pending so the relay tries again."""
        if not jobs:
            return
        with self.sessions.begin() as s:
            s.execute(
                sa.update(JobRow)
                .where(JobRow.id.in_([j.job_id for j in jobs]))
                .values(state="pending", lease_until=None, last_error=error[:2000], updated_at=utcnow())
            )

    def due_settlements(self, limit: int) -> list[SettleWork]:
        now = utcnow()
        with self.sessions() as s:
            rows = s.scalars(
                sa.select(JobRow)
                .where(JobRow.kind == "settle", JobRow.state == "pending", JobRow.due_at <= now)
                .order_by(JobRow.due_at)
                .limit(limit)
            ).all()
            return [
                SettleWork(
                    job_id=r.id,
                    tenant=r.tenant,
                    reservation_id=str(r.payload.get("reservation_id", "")),
                    status=str(r.payload.get("status", "")),
                    duration_seconds=int(r.payload.get("duration_seconds", 0)),
                    price_usd=str(r.payload.get("price_usd", "")),
                )
                for r in rows
            ]

    def finish_settlement(self, job_id: str, error: str, retry_in: float | None) -> None:
        now = utcnow()
        with self.sessions.begin() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                return
            row.last_error = error[:2000]
            row.updated_at = now
            if retry_in is None:
                row.state = "done"
            else:
                row.due_at = now + timedelta(seconds=retry_in)
                row.enqueue_count += 1

    def calls_to_reconcile(self, timeout_seconds: float, limit: int) -> int:
        """Create a call_status job for each placed call whose final callback never came."""
        now = utcnow()
        cutoff = now - timedelta(seconds=timeout_seconds)
        created = 0
        with self.sessions.begin() as s:
            rows = s.scalars(
                sa.select(DialAttemptRow)
                .where(DialAttemptRow.state == "dialed", DialAttemptRow.dialed_at < cutoff)
                .limit(limit)
            ).all()
            for row in rows:
                exists = s.scalars(
                    sa.select(JobRow.id).where(
                        JobRow.tenant == row.tenant,
                        JobRow.lead_id == row.lead_id,
                        JobRow.kind == "call_status",
                        JobRow.attempt == row.attempt,
                    )
                ).first()
                if exists:
                    continue
                s.add(
                    _job(
                        row.tenant,
                        row.lead_id,
                        "call_status",
                        "call_status",
                        now,
                        "",
                        now,
                        attempt=row.attempt,
                        payload={
                            "attempt_id": row.id,
                            "provider": row.provider,
                            "provider_call_id": row.provider_call_id or "",
                        },
                    )
                )
                created += 1
        return created

    def mark_job_done(self, tenant: str, lead_id: str, kind: str, attempt: int) -> None:
        with self.sessions.begin() as s:
            s.execute(
                sa.update(JobRow)
                .where(
                    JobRow.tenant == tenant,
                    JobRow.lead_id == lead_id,
                    JobRow.kind == kind,
                    JobRow.attempt == attempt,
                )
                .values(state="done", updated_at=utcnow())
            )

    def counts(self) -> dict[str, int]:
        """Gauges for /metrics: outbox backlog by state and open dead letters."""
        with self.sessions() as s:
            out = {
                f"jobs_{state}": int(n)
                for state, n in s.execute(
                    sa.select(JobRow.state, sa.func.count())
                    .where(JobRow.state.in_(("pending", "queued")))
                    .group_by(JobRow.state)
                ).all()
            }
            out["dead_letters_open"] = int(
                s.scalar(
                    sa.select(sa.func.count()).select_from(DeadLetterRow).where(DeadLetterRow.state == "open")
                )
                or 0
            )
            return out


def source_of(lead: lead_pb2.Lead) -> str:
    return scheduling.source_name(lead.source)


def dead_letter_proto(row: DeadLetterRow) -> dispatcher_pb2.DeadLetter:
    return dispatcher_pb2.DeadLetter(
        dead_letter_id=row.id,
        tenant=row.tenant,
        queue=row.queue,
        lead_id=row.lead_id,
        actor=row.actor,
        error_class=row.error_class,
        error=row.error,
        attempts=row.attempts,
        failed_at=to_proto(row.failed_at),
        state=row.state,
        note=row.note,
        message_json=row.message_json,
        job_kind=row.job_kind,
        job_attempt=row.job_attempt,
    )

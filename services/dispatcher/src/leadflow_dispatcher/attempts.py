"""Dial attempts: claims (one wins), completion, deferral, call status callbacks and settling."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadflow.v1 import decision_pb2, dispatcher_pb2, lead_pb2
from leadflow_core.clock import now as utcnow
from leadflow_core.db_conflicts import retry_conflicts
from leadflow_core.timestamps import as_utc, from_proto
from leadflow_dispatcher import scheduling
from leadflow_dispatcher.events import add_call_placed, add_event
from leadflow_dispatcher.models import (
    CallStatusRow,
    DialAttemptRow,
    JobRow,
    LeadRow,
    ReviewRow,
)
from leadflow_dispatcher.policies import PolicyView
from leadflow_dispatcher.repository import (
    JOBS,
    LIVE_JOB_STATES,
    Repository,
    event_row,
    insert_ignoring_many,
    job_row,
    new_id,
)

# Attempts that may have reached the provider: never gated and dialed again before a lookup.
MAYBE_PLACED = ("dialing", "unsure", "reconciling", "review")
# Attempts a person's next lead waits for (a call may be under way).
IN_FLIGHT = ("claimed", *MAYBE_PLACED)


@dataclass(frozen=True)
class CallReport:
    """One status callback of a call (or a worker's report of one), as RecordCallStatus takes it."""

    tenant: str
    provider_call_id: str
    status: str
    duration_seconds: int
    price_usd: str
    params: dict[str, str]
    request_id: str
    attempt_id: str = ""


@dataclass
class ClaimResult:
    claimed: bool
    attempt_id: str
    state: str
    lead: lead_pb2.Lead
    resumed: bool = False
    tries: int = 0
    # Won to look the call up at the provider (see ClaimDialAttemptResponse.reconcile).
    reconcile: bool = False
    dialing_at: datetime | None = None
    reservation_id: str = ""


def lock_calls(s: Session, calls: list[tuple[str, str]], postgres: bool) -> None:
    """Transaction locks on (tenant, provider call id), in one order (PostgreSQL only)."""
    if not postgres or not calls:
        return
    keys = sorted({f"call:{tenant}:{call_id}" for tenant, call_id in calls})
    s.execute(
        sa.text(
            "SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k"
        ),
        {"keys": keys},
    )


class AttemptStore(Repository):
    # How long after a call ends without a price its price is first looked up (the service sets
    # it from LEADFLOW_CALL_PRICE_DELAY_SECONDS).
    call_price_delay_seconds: float = 60.0

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
        # An attempt that may have reached the provider is not resumed here: only StartDials
        # hands it out, for a lookup at the provider first.
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
            event_row(
                tenant,
                lead_id,
                "dialing",
                {"attempt": attempt, "attempt_id": attempt_id, "try": tries},
                request_id,
                now,
                f"dialing:{attempt_id}:{tries}",
            )
        )

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
                    event_row(
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
                    write_queued(s)
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
                event_row(
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
            add_call_placed(s, policy, row, provider, provider_call_id, now)
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
            write_queued(s)

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
                event_row(
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

    def record_call_statuses(
        self, reports: Sequence[CallReport], policy_for: Callable[[str], PolicyView]
    ) -> list[tuple[bool, str]]:
        """Apply each (call, status) report once, in order, in one transaction: one lock
        statement for all the calls, one read of what they already have, one commit. A report of
        a status already applied (before, or earlier in the batch) changes nothing, except that it
        may bring the provider's price of a call that ended without one (`params["source"] ==
        "price"` is the worker that looked the price up, also when it gave up: its job is then
        finished and the estimate stands). Answers (applied, lead id) per report."""
        if not reports:
            return []
        try:
            return self._record_batch(reports, policy_for)
        except IntegrityError:
            # Only a report that raced another without the calls' locks gets here (SQLite has
            # none): one transaction per report then, each settling its own conflict.
            return [self._record_one(r, policy_for) for r in reports]

    # A batch locks rows of several leads (attempts, jobs, leads) after the calls' locks, so
    # PostgreSQL may pick it to break a deadlock with a transaction that took them in another
    # order; rolled back whole, it runs again.
    @retry_conflicts()
    def _record_batch(
        self, reports: Sequence[CallReport], policy_for: Callable[[str], PolicyView]
    ) -> list[tuple[bool, str]]:
        with self.sessions.begin() as s:
            return self._record_reports(s, reports, policy_for, utcnow())

    def _record_reports(
        self,
        s: Session,
        reports: Sequence[CallReport],
        policy_for: Callable[[str], PolicyView],
        now: datetime,
    ) -> list[tuple[bool, str]]:
        calls = sorted({(r.tenant, r.provider_call_id) for r in reports})
        # The calls' locks, also taken by a batch recording calls as placed: without them, a
        # callback and that report, committing at once, could each miss the other, and the
        # status would never be applied. Held, they make the read below the whole truth.
        lock_calls(s, calls, self.postgres)
        stored = {
            (row.tenant, row.provider_call_id, row.status)
            for row in s.execute(
                sa.select(CallStatusRow.tenant, CallStatusRow.provider_call_id, CallStatusRow.status).where(
                    sa.tuple_(CallStatusRow.tenant, CallStatusRow.provider_call_id).in_(calls)
                )
            )
        }
        attempts: dict[tuple[str, str], DialAttemptRow] = {}
        for row in s.scalars(
            sa.select(DialAttemptRow).where(
                sa.tuple_(DialAttemptRow.tenant, DialAttemptRow.provider_call_id).in_(calls)
            )
        ):
            attempts.setdefault((row.tenant, row.provider_call_id or ""), row)
        out: list[tuple[bool, str]] = []
        for r in reports:
            call = (r.tenant, r.provider_call_id)
            if (*call, r.status) in stored:
                out.append(self._repeated_in(s, r, now))
                continue
            stored.add((*call, r.status))
            status_row = CallStatusRow(
                tenant=r.tenant,
                provider_call_id=r.provider_call_id,
                status=r.status,
                duration_seconds=r.duration_seconds,
                price_usd=r.price_usd,
                params=r.params,
                applied=False,
                at=now,
            )
            s.add(status_row)
            attempt = attempts.get(call)
            if attempt is None and r.attempt_id:
                attempt, extra = self._adopt(
                    s,
                    r.tenant,
                    r.attempt_id,
                    r.provider_call_id,
                    r.status,
                    policy_for(r.tenant),
                    r.request_id,
                    now,
                )
                if attempt is not None and extra:
                    status_row.applied = True  # on the timeline as an extra call; never aside
                    out.append((True, attempt.lead_id))
                    continue
                if attempt is not None:
                    attempts[call] = attempt
            if attempt is None:
                # The callback outran CompleteDialAttempt; it is applied when that arrives.
                out.append((True, ""))
                continue
            self._apply_status(s, attempt, status_row, policy_for(r.tenant), r.request_id, now)
            out.append((True, attempt.lead_id))
        write_queued(s)
        return out

    @retry_conflicts()
    def _record_one(self, r: CallReport, policy_for: Callable[[str], PolicyView]) -> tuple[bool, str]:
        try:
            with self.sessions.begin() as s:
                return self._record_reports(s, [r], policy_for, utcnow())[0]
        except IntegrityError:
            # Stored meanwhile by a report that held no lock: rolled back whole, it is a repeat.
            with self.sessions.begin() as s:
                lock_calls(s, [(r.tenant, r.provider_call_id)], self.postgres)
                repeated = self._repeated_in(s, r, utcnow())
                write_queued(s)
                return repeated

    def _repeated_in(self, s: Session, r: CallReport, now: datetime) -> tuple[bool, str]:
        attempt = s.scalars(
            sa.select(DialAttemptRow)
            .where(DialAttemptRow.tenant == r.tenant, DialAttemptRow.provider_call_id == r.provider_call_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).first()
        if attempt is None:
            return False, ""
        priced = False
        if r.price_usd and attempt.state == "ended" and r.status == attempt.call_status:
            priced = self._apply_price(s, attempt, r.price_usd, r.request_id, now)
        if priced or r.params.get("source") == "price":
            _finish_jobs(s, attempt, "call_price", now)
        return priced, attempt.lead_id

    def _adopt(
        self,
        s: Session,
        tenant: str,
        attempt_id: str,
        provider_call_id: str,
        status: str,
        policy: PolicyView,
        request_id: str,
        now: datetime,
    ) -> tuple[DialAttemptRow | None, bool]:
        """A callback for a call we hold no record of, carrying our marker (the attempt id in its
        URL, covered by the provider's signature): the call of an attempt whose create went
        unanswered. It becomes that attempt's call, as if the create had answered. A call
        beside the one the attempt already has is still applied, as an extra call, never dropped."""
        attempt = s.scalars(
            sa.select(DialAttemptRow)
            .where(DialAttemptRow.tenant == tenant, DialAttemptRow.id == attempt_id)
            .with_for_update()
        ).first()
        if attempt is None:
            return None, False
        if attempt.provider_call_id and attempt.provider_call_id != provider_call_id:
            s.add(
                event_row(
                    tenant,
                    attempt.lead_id,
                    "extra_call",
                    {
                        "attempt": attempt.attempt,
                        "attempt_id": attempt.id,
                        "call_id": provider_call_id,
                        "status": status,
                    },
                    request_id,
                    now,
                )
            )
            return attempt, True
        if attempt.state == "review":
            # The provider's own callback proves the call: nothing is left for a person to decide.
            review = s.get(ReviewRow, (tenant, attempt.lead_id), with_for_update=True)
            if review is not None and review.state == "open":
                review.state, review.decided_by, review.decided_at = "resolved", "callback", now
                review.note = "the provider's status callback proved the call"
        attempt.state = "dialed"
        attempt.provider_call_id = provider_call_id
        attempt.dialed_at = now
        attempt.error = ""
        s.execute(
            sa.update(JobRow)
            .where(
                JobRow.tenant == tenant,
                JobRow.lead_id == attempt.lead_id,
                JobRow.kind == "dial",
                JobRow.attempt == attempt.attempt,
            )
            .values(state="done", updated_at=now)
        )
        s.execute(
            sa.update(LeadRow)
            .where(LeadRow.tenant == tenant, LeadRow.id == attempt.lead_id)
            .values(dial_state=dispatcher_pb2.DIAL_STATE_DIALED)
        )
        s.add(
            event_row(
                tenant,
                attempt.lead_id,
                "dialed",
                {
                    "attempt": attempt.attempt,
                    "attempt_id": attempt.id,
                    "provider": attempt.provider,
                    "call_id": provider_call_id,
                    "by": "callback",
                },
                request_id,
                now,
                f"dialed:{attempt.id}",
            )
        )
        add_call_placed(s, policy, attempt, attempt.provider, provider_call_id, now)
        s.flush()
        return attempt, False

    def _apply_price(
        self, s: Session, attempt: DialAttemptRow, price_usd: str, request_id: str, now: datetime
    ) -> bool:
        """The provider's price of an ended call that had none: kept, and settled again (the
        reservation was settled at its estimate). A price once known is never replaced."""
        if attempt.price_usd:
            return False
        attempt.price_usd = price_usd
        s.execute(
            sa.update(CallStatusRow)
            .where(
                CallStatusRow.tenant == attempt.tenant,
                CallStatusRow.provider_call_id == attempt.provider_call_id,
                CallStatusRow.status == attempt.call_status,
            )
            .values(price_usd=price_usd)
        )
        s.add(
            event_row(
                attempt.tenant,
                attempt.lead_id,
                "call_priced",
                {"attempt": attempt.attempt, "call_id": attempt.provider_call_id, "price_usd": price_usd},
                request_id,
                now,
            )
        )
        if attempt.reservation_id:
            self._add_settle(
                s,
                attempt,
                attempt.call_status,
                attempt.duration_seconds,
                price_usd,
                request_id,
                now,
                kind="settle_price",
            )
        return True

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
            event_row(
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
            # A late progress callback after the final one changes nothing; a price is kept.
            if status_row.price_usd and status == attempt.call_status:
                self._apply_price(s, attempt, status_row.price_usd, request_id, now)
            return
        attempt.call_status = status
        if status not in scheduling.FINAL_CALL_STATUSES:
            return
        attempt.state = "ended"
        attempt.ended_at = now
        attempt.duration_seconds = status_row.duration_seconds
        attempt.price_usd = status_row.price_usd
        # The call's end is known: a lookup of its status (lost callbacks) has nothing left to do.
        _finish_jobs(s, attempt, "call_status", now)
        if status == "completed" and not status_row.price_usd and attempt.reservation_id:
            # Twilio's callbacks carry no price, and its Calls resource has one only some time
            # after the call: a worker looks it up then, and the reservation is settled again.
            s.add(
                job_row(
                    attempt.tenant,
                    attempt.lead_id,
                    "call_price",
                    "call_status",
                    now + timedelta(seconds=self.call_price_delay_seconds),
                    request_id,
                    now,
                    attempt=attempt.attempt,
                    payload={
                        "attempt_id": attempt.id,
                        "provider": attempt.provider,
                        "provider_call_id": attempt.provider_call_id or "",
                        "ended_at": now.timestamp(),
                    },
                )
            )
        call_data = {
            "lead_id": attempt.lead_id,
            "attempt": attempt.attempt,
            "call_id": attempt.provider_call_id,
            "status": status,
            "duration_seconds": status_row.duration_seconds,
        }
        add_event(s, policy, attempt.tenant, "call.completed", attempt.lead_id, call_data, now)
        if attempt.reservation_id:
            self._add_settle(
                s, attempt, status, status_row.duration_seconds, status_row.price_usd, request_id, now
            )
        retry_at = scheduling.next_call_attempt_at(
            status, attempt.attempt, policy.max_dial_attempts, policy.retry_backoff_seconds, now
        )
        if retry_at is None:
            return  # the lead is read only for a retry: most calls end without one
        lead_row = s.get(LeadRow, attempt.lead_id)
        if lead_row is None:
            return
        s.add(
            job_row(
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
            event_row(
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
        kind: str = "settle",
    ) -> None:
        # One settle per reservation (the jobs' unique key; a not-placed release and a later
        # settle use distinct rows): queued for an INSERT that skips a settle already there,
        # instead of a read for it and an insert.
        row = job_row(
            attempt.tenant,
            attempt.lead_id,
            kind,
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
        _queued(s).settles.append({column.key: getattr(row, column.key) for column in JOBS.columns})


# A call's end finishes its status lookups and queues its settle; a batch of reports writes
# those at its end, one statement each (`write_queued`), not one statement per call: per call,
# building and running the lookups' UPDATE (which almost never matches: only the reconciler
# makes lookups) and the settle's INSERT were a sixth of the dispatcher's CPU under callbacks.
_QUEUED = "leadflow.attempts.queued"
_FINISH = (
    JOBS.update()
    .where(
        JOBS.c.tenant == sa.bindparam("job_tenant"),
        JOBS.c.lead_id == sa.bindparam("job_lead_id"),
        JOBS.c.kind == sa.bindparam("job_kind"),
        JOBS.c.attempt == sa.bindparam("job_attempt"),
        # Not `in_()`: its expanding parameter cannot go in an executemany.
        sa.or_(*(JOBS.c.state == state for state in LIVE_JOB_STATES)),
    )
    .values(state="done", updated_at=sa.bindparam("job_now"))
)


@dataclass
class _Queued:
    finishes: list[dict[str, Any]] = field(default_factory=list)
    settles: list[dict[str, Any]] = field(default_factory=list)


def _queued(s: Session) -> _Queued:
    queued: _Queued = s.info.setdefault(_QUEUED, _Queued())
    return queued


def _finish_jobs(s: Session, attempt: DialAttemptRow, kind: str, now: datetime) -> None:
    """Status lookups (or price lookups) of this attempt's call are done: else the sweeper,
    finding their message gone from Redis, would send them again and again. Queued for
    `write_queued`."""
    _queued(s).finishes.append(
        {
            "job_tenant": attempt.tenant,
            "job_lead_id": attempt.lead_id,
            "job_kind": kind,
            "job_attempt": attempt.attempt,
            "job_now": now,
        }
    )


def write_queued(s: Session) -> None:
    """Write what this transaction's reports queued: every settle in one `INSERT ... ON CONFLICT
    DO NOTHING` on the jobs' unique key (one settle per reservation), every finish in one
    executemany of a statement compiled once. Call before the transaction commits."""
    queued = s.info.pop(_QUEUED, None)
    if queued is None:
        return
    if queued.settles:
        dialect = s.get_bind().dialect.name
        s.execute(
            insert_ignoring_many(dialect, JOBS, ("tenant", "lead_id", "kind", "attempt")), queued.settles
        )
    if queued.finishes:
        # A lookup job added or changed earlier in the transaction is flushed first, so the
        # UPDATE sees it and the commit's flush does not undo it; else no flush, so the batch's
        # rows still go out together at its commit.
        finished = {(f["job_lead_id"], f["job_kind"]) for f in queued.finishes}
        if any(isinstance(o, JobRow) and (o.lead_id, o.kind) in finished for o in (*s.new, *s.dirty)):
            s.flush()
        s.execute(_FINISH, queued.finishes)

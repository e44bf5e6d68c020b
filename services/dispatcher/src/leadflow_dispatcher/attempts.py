"""Dial attempts: claims (one wins), completion, deferral, call status callbacks and settling."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadflow.v1 import decision_pb2, dispatcher_pb2, lead_pb2
from leadflow_core.clock import now as utcnow
from leadflow_core.timestamps import as_utc, from_proto
from leadflow_dispatcher import scheduling
from leadflow_dispatcher.events import add_call_placed, add_event
from leadflow_dispatcher.models import (
    CallStatusRow,
    DialAttemptRow,
    JobRow,
    LeadRow,
)
from leadflow_dispatcher.policies import PolicyView
from leadflow_dispatcher.repository import (
    Repository,
    event_row,
    job_row,
    new_id,
)


@dataclass
class ClaimResult:
    claimed: bool
    attempt_id: str
    state: str
    lead: lead_pb2.Lead
    resumed: bool = False
    tries: int = 0


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
                # The call's lock, also taken by a batch recording the call as placed: without
                # it, a callback and that report, committing at once, could each miss the
                # other, and the status would never be applied.
                lock_calls(s, [(tenant, provider_call_id)], self.postgres)
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
            return  # a late progress callback after the final one changes nothing
        attempt.call_status = status
        if status not in scheduling.FINAL_CALL_STATUSES:
            return
        attempt.state = "ended"
        attempt.ended_at = now
        attempt.duration_seconds = status_row.duration_seconds
        attempt.price_usd = status_row.price_usd
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
        lead_row = s.get(LeadRow, attempt.lead_id)
        if retry_at is None or lead_row is None:
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
            job_row(
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

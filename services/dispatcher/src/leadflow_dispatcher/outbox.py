"""The outbox's queries for the relay: due work, leases, lost work, settlements, reconciling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
import sqlalchemy.orm

from leadflow_core.clock import now as utcnow
from leadflow_core.timestamps import as_utc
from leadflow_dispatcher.models import (
    DeadLetterRow,
    DialAttemptRow,
    JobRow,
)
from leadflow_dispatcher.queueing import JobSpec
from leadflow_dispatcher.repository import (
    BROKER_KINDS,
    JOBS,
    LIVE_JOB_STATES,
    SETTLE_KINDS,
    Repository,
    job_row,
    job_spec,
)


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


@dataclass(frozen=True)
class SettleOutcome:
    job_id: str
    error: str = ""
    retry_in: float | None = None  # None: done (settled, or nothing a retry could settle)


# A Core UPDATE by key, run as one pipelined executemany: the ORM's bulk UPDATE of the same rows
# cost ~3 ms of CPU per call (once per relayed batch, a few jobs each), this ~0.3 ms.
_NOTE_ENQUEUED = (
    sa.update(JOBS)
    .where(JOBS.c.id == sa.bindparam("job_id"))
    .values(
        broker_queue=sa.bindparam("to_queue"),
        broker_message_id=sa.bindparam("mid"),
        enqueued_at=sa.bindparam("at"),
    )
)


class OutboxStore(Repository):
    # ---- the relay's queries -----------------------------------------------------------

    def claim_due_jobs(
        self,
        horizon_seconds: float,
        lease_seconds: float,
        limit: int,
        paused_queues: Sequence[str] = (),
    ) -> list[tuple[JobSpec, float]]:
        """Pending jobs due within the horizon, marked queued with a lease; each with its delay.
        Jobs of paused queues stay pending."""
        now = utcnow()
        horizon = now + timedelta(seconds=horizon_seconds)
        # A job waits while the same kind of job of an earlier lead of its (person, campaign) is
        # unfinished: a person's work runs in arrival order, other people's in parallel.
        earlier = sa.orm.aliased(JobRow)
        waiting = sa.exists().where(
            earlier.tenant == JobRow.tenant,
            earlier.order_key == JobRow.order_key,
            earlier.kind == JobRow.kind,
            earlier.order_seq < JobRow.order_seq,
            earlier.state.in_(LIVE_JOB_STATES),
        )
        where = [JobRow.kind.in_(BROKER_KINDS), JobRow.state == "pending", JobRow.due_at <= horizon, ~waiting]
        if paused_queues:
            where.append(JobRow.queue.not_in(list(paused_queues)))
        with self.sessions.begin() as s:
            rows = s.scalars(
                sa.select(JobRow)
                .where(*where)
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
                _NOTE_ENQUEUED,
                [{"job_id": job_id, "to_queue": queue, "mid": mid, "at": now} for job_id, queue, mid in sent],
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
                .where(JobRow.kind.in_(SETTLE_KINDS), JobRow.state == "pending", JobRow.due_at <= now)
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

    def finish_settlements(self, outcomes: Sequence[SettleOutcome]) -> None:
        """A relay pass's settlements, in one commit: done, or due again after `retry_in`.

        One UPDATE per distinct (error, retry) — almost always a single one for the whole pass —
        instead of a load, a flush and a commit per job (a fifth of the dispatcher's time while
        calls ended, when each was its own transaction)."""
        if not outcomes:
            return
        now = utcnow()
        groups: dict[tuple[str, float | None], list[str]] = {}
        for o in outcomes:
            groups.setdefault((o.error[:2000], o.retry_in), []).append(o.job_id)
        with self.sessions.begin() as s:
            for (error, retry_in), ids in groups.items():
                update = JOBS.update().where(JOBS.c.id.in_(ids))
                if retry_in is None:
                    update = update.values(state="done", last_error=error, updated_at=now)
                else:
                    update = update.values(
                        due_at=now + timedelta(seconds=retry_in),
                        enqueue_count=JOBS.c.enqueue_count + 1,
                        last_error=error,
                        updated_at=now,
                    )
                s.execute(update)

    def calls_to_reconcile(self, timeout_seconds: float, limit: int) -> int:
        """Create a call_status job for each placed call whose final callback never came."""
        now = utcnow()
        cutoff = now - timedelta(seconds=timeout_seconds)
        created = 0
        # Calls that already have a status job are left out in SQL, not after the limit: else a
        # page of long-running calls would hide every newer call from reconciliation for good.
        has_job = (
            sa.select(JobRow.id)
            .where(
                JobRow.tenant == DialAttemptRow.tenant,
                JobRow.lead_id == DialAttemptRow.lead_id,
                JobRow.kind == "call_status",
                JobRow.attempt == DialAttemptRow.attempt,
            )
            .exists()
        )
        with self.sessions.begin() as s:
            rows = s.scalars(
                sa.select(DialAttemptRow)
                .where(DialAttemptRow.state == "dialed", DialAttemptRow.dialed_at < cutoff, ~has_job)
                .order_by(DialAttemptRow.dialed_at)
                .limit(limit)
            ).all()
            for row in rows:
                s.add(
                    job_row(
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

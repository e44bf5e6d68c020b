"""Dead letters: jobs the workers gave up on, kept to inspect, replay, resolve or purge."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadflow.v1 import dispatcher_pb2, lead_pb2
from leadflow_core import queues
from leadflow_core.clock import now as utcnow
from leadflow_core.timestamps import from_proto, to_proto
from leadflow_dispatcher.events import add_event
from leadflow_dispatcher.models import (
    DeadLetterRow,
    JobRow,
    LeadRow,
)
from leadflow_dispatcher.pii_redaction import redact
from leadflow_dispatcher.policies import PolicyView
from leadflow_dispatcher.queueing import JobSpec
from leadflow_dispatcher.repository import (
    LIVE_JOB_STATES,
    NotFound,
    Repository,
    event_row,
    job_spec,
    new_id,
)


class DeadLetterStore(Repository):
    # ---- dead letters ------------------------------------------------------------------

    def record_dead_letter(
        self, dl: dispatcher_pb2.DeadLetter, request_id: str, policy: PolicyView | None = None
    ) -> dispatcher_pb2.DeadLetter:
        now = utcnow()
        dl_id = dl.dead_letter_id or new_id()
        with self.sessions.begin() as s:
            existing = s.get(DeadLetterRow, dl_id)
            if existing is not None:
                if existing.tenant != dl.tenant:
                    raise NotFound(dl_id)
                return dead_letter_proto(existing)
            # The error may quote the lead's data (a value a database refused, a provider's echo).
            error = redact(dl.error, self._lead_of(s, dl.tenant, dl.lead_id))[:4000]
            row = DeadLetterRow(
                id=dl_id,
                tenant=dl.tenant,
                queue=dl.queue,
                lead_id=dl.lead_id,
                actor=dl.actor,
                job_kind=dl.job_kind,
                job_attempt=dl.job_attempt or 1,
                error_class=dl.error_class,
                error=error,
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
                    .values(state="dead", last_error=error[:2000], updated_at=now)
                )
                s.add(
                    event_row(
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
            if policy is not None:
                dead_data = {
                    "dead_letter_id": dl_id,
                    "lead_id": dl.lead_id,
                    "queue": dl.queue,
                    "job": dl.job_kind,
                    "error_class": dl.error_class,
                    "attempts": dl.attempts,
                }
                add_event(s, policy, dl.tenant, "lead.dead_lettered", dl.lead_id, dead_data, now)
            s.flush()
            return dead_letter_proto(row)

    @staticmethod
    def _lead_of(s: Session, tenant: str, lead_id: str) -> lead_pb2.Lead | None:
        row = s.get(LeadRow, lead_id) if lead_id else None
        if row is None or row.tenant != tenant:
            return None
        return lead_pb2.Lead.FromString(row.lead_pb)

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
                # Kept in the job (not only its next message), so a resend after a broker
                # failure still reads the config the operator just fixed.
                job.payload = {**(job.payload or {}), queues.FRESH_CONFIG_OPTION: True}
                s.add(
                    event_row(
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

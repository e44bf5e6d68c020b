"""Releasing a tenant's deferred dials at once when its tenant changes (resume, higher limits or
budget), instead of leaving them to their next recheck (a paused tenant's dials are asked
about again only every few minutes).

Compliance announces every committed tenant change (`leadflow_core.tenant_changes`). On that
notice the dispatcher makes the tenant's deferred dial jobs due now, in priority order: urgency
first, then the order they were due in. The relay enqueues them on its next pass and each goes
through the final gate as usual; a lead that is still refused (calling hours, a limit still
reached) is simply deferred again. Dials waiting only for their urgency's dial delay are not
deferred and are left alone.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from leadflow.v1 import dispatcher_pb2
from leadflow_core.clock import now as utcnow
from leadflow_core.queues import URGENCIES
from leadflow_dispatcher.models import JobRow, LeadRow
from leadflow_dispatcher.repository import Repository

# The released jobs' due instants are spread by this much, so the relay (which takes due work
# in due order) hands them over in priority order.
_STEP = timedelta(microseconds=1)


class DeferredReleaseStore(Repository):
    def release_deferred(self, tenant: str, after_seconds: float = 0.0) -> int:
        """Make `tenant`'s deferred dial jobs due `after_seconds` from now; how many."""
        now = utcnow()
        start = now + timedelta(seconds=after_seconds)
        rank = sa.case({u: i for i, u in enumerate(URGENCIES)}, value=LeadRow.urgency, else_=len(URGENCIES))
        with self.sessions.begin() as s:
            rows = s.execute(
                sa.select(JobRow.id)
                .join(LeadRow, sa.and_(LeadRow.tenant == JobRow.tenant, LeadRow.id == JobRow.lead_id))
                .where(
                    JobRow.tenant == tenant,
                    JobRow.kind == "dial",
                    JobRow.state == "pending",
                    JobRow.due_at > start,
                    LeadRow.dial_state == dispatcher_pb2.DIAL_STATE_DEFERRED,
                )
                .order_by(rank, JobRow.due_at)
                .with_for_update(of=JobRow, skip_locked=True)
            ).all()
            if rows:
                s.execute(
                    sa.update(JobRow),
                    [
                        {"id": job_id, "due_at": start + _STEP * i, "updated_at": now}
                        for i, (job_id,) in enumerate(rows)
                    ],
                )
            return len(rows)

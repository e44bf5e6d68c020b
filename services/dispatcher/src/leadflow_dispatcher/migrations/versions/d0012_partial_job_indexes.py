"""jobs' due and lease indexes hold only the rows their queries look for (pending, queued)

The relay looks for pending jobs by due time and the sweeper for queued ones by lease; both
indexes held every job, almost all of them done. As partial indexes they stay small, a job that
is done leaves them, and the planner can no longer pick them for a query by state = 'done'
(with a fresh table's statistics it did, and scanned every done job of the table per call).

Revision ID: d0012_partial_job_indexes
Revises: d0011_attempt_dialing_at
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d0012_partial_job_indexes"
down_revision: str | None = "d0011_attempt_dialing_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.text("state = 'pending'")
_QUEUED = sa.text("state = 'queued'")


def upgrade() -> None:
    # Built without blocking writes on a live PostgreSQL (outside the migration's transaction).
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_dispatcher_jobs_pending_due",
            "dispatcher_jobs",
            ["due_at"],
            postgresql_where=_PENDING,
            sqlite_where=_PENDING,
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_dispatcher_jobs_queued_lease",
            "dispatcher_jobs",
            ["lease_until"],
            postgresql_where=_QUEUED,
            sqlite_where=_QUEUED,
            postgresql_concurrently=True,
        )
        op.drop_index("ix_dispatcher_jobs_due", "dispatcher_jobs", postgresql_concurrently=True)
        op.drop_index("ix_dispatcher_jobs_lease", "dispatcher_jobs", postgresql_concurrently=True)


def downgrade() -> None:
    op.create_index("ix_dispatcher_jobs_due", "dispatcher_jobs", ["state", "due_at"])
    op.create_index("ix_dispatcher_jobs_lease", "dispatcher_jobs", ["state", "lease_until"])
    op.drop_index("ix_dispatcher_jobs_pending_due", "dispatcher_jobs")
    op.drop_index("ix_dispatcher_jobs_queued_lease", "dispatcher_jobs")

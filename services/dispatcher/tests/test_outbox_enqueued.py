"""The relay records where each job's message went (`OutboxStore.note_enqueued`): the sweeper
later looks for that message in Redis to tell a lost one from one still queued."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from leadflow_core.db import make_engine, make_sessionmaker
from leadflow_dispatcher.models import JobRow
from leadflow_dispatcher.outbox import OutboxStore
from leadflow_dispatcher.repository import job_row, new_id


@pytest.fixture
def outbox(database_url: str) -> Iterator[OutboxStore]:
    engine = make_engine(database_url)
    yield OutboxStore(make_sessionmaker(engine), postgres=True)
    engine.dispose()


def test_each_job_keeps_its_own_queue_and_message_id_and_no_other_job_changes(outbox: OutboxStore) -> None:
    now = datetime.now(UTC)
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    jobs = [
        job_row(tenant, new_id(), kind, kind, now, "req", now) for kind in ("enrich", "crm_sync", "enrich")
    ]
    with outbox.sessions.begin() as s:
        s.add_all(jobs)
    sent = [(jobs[0].id, "enrich", "m-0"), (jobs[1].id, "crm_sync.DQ", "m-1")]
    outbox.note_enqueued(sent)
    outbox.note_enqueued([])
    with outbox.sessions() as s:
        rows = {r.id: r for r in s.scalars(sa.select(JobRow).where(JobRow.id.in_([j.id for j in jobs])))}
    assert (rows[jobs[0].id].broker_queue, rows[jobs[0].id].broker_message_id) == ("enrich", "m-0")
    assert (rows[jobs[1].id].broker_queue, rows[jobs[1].id].broker_message_id) == ("crm_sync.DQ", "m-1")
    for job in jobs[:2]:
        enqueued = rows[job.id].enqueued_at
        assert enqueued is not None
        assert enqueued >= now
        # Only where the message went changes: state and kind stay as stored.
        assert (rows[job.id].state, rows[job.id].kind) == ("pending", job.kind)
    untouched = rows[jobs[2].id]
    assert (untouched.broker_queue, untouched.broker_message_id, untouched.enqueued_at) == ("", "", None)

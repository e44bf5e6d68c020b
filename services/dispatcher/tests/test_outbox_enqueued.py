"""The relay records where each job's message went (`OutboxStore.note_enqueued`): the sweeper
later looks for that message in Redis to tell a lost one from one still queued; and how each
settlement of a pass ended (`OutboxStore.finish_settlements`), also when the pass's one
SettleCalls failed as a whole."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from leadflow.v1 import compliance_pb2_grpc
from leadflow_core.db import make_engine, make_sessionmaker
from leadflow_core.grpc_clients import channel
from leadflow_dispatcher.models import JobRow
from leadflow_dispatcher.outbox import OutboxStore, SettleOutcome
from leadflow_dispatcher.queueing import make_broker
from leadflow_dispatcher.relay import Relay
from leadflow_dispatcher.repository import job_row, new_id
from leadflow_dispatcher.settings import DispatcherSettings
from leadflow_dispatcher.store import Store


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


def test_a_passs_settlements_finish_together_each_as_its_outcome_says(outbox: OutboxStore) -> None:
    """The relay records a pass's settlements in one commit: settled ones done, ones that
    nothing could settle done with their error, ones compliance could not answer due again."""
    now = datetime.now(UTC)
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    jobs = [
        job_row(tenant, new_id(), "settle", "settle", now, "req", now, payload={"reservation_id": f"r{i}"})
        for i in range(5)
    ]
    with outbox.sessions.begin() as s:
        s.add_all(jobs)
    due = {w.job_id for w in outbox.due_settlements(100)}
    assert {j.id for j in jobs} <= due
    settled, unknown, busy, busy_too, untouched = jobs
    outbox.finish_settlements(
        [
            SettleOutcome(settled.id),
            SettleOutcome(unknown.id, "NOT_FOUND: no such reservation"),
            SettleOutcome(busy.id, "UNAVAILABLE: down", 5.0),
            SettleOutcome(busy_too.id, "UNAVAILABLE: down", 5.0),
        ]
    )
    outbox.finish_settlements([])
    with outbox.sessions() as s:
        rows = {r.id: r for r in s.scalars(sa.select(JobRow).where(JobRow.id.in_([j.id for j in jobs])))}
    assert (rows[settled.id].state, rows[settled.id].last_error) == ("done", "")
    assert (rows[unknown.id].state, rows[unknown.id].last_error) == ("done", "NOT_FOUND: no such reservation")
    for job in (busy, busy_too):
        row = rows[job.id]
        assert (row.state, row.last_error, row.enqueue_count) == ("pending", "UNAVAILABLE: down", 1)
        assert row.due_at >= now + timedelta(seconds=4)
    assert (rows[untouched.id].state, rows[untouched.id].enqueue_count) == ("pending", 0)
    # Only the one left alone is still due; the retried ones come back after their delay.
    left = {w.job_id for w in outbox.due_settlements(100)} & {j.id for j in jobs}
    assert left == {untouched.id}


def test_a_pass_whose_settle_call_fails_whole_retries_every_call(
    outbox: OutboxStore, redis_url: str, redis_prefix: str
) -> None:
    """When SettleCalls itself fails (compliance unreachable), no call was refused for itself:
    every settlement of the pass is due again with the error, none is done."""
    now = datetime.now(UTC)
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    jobs = [
        job_row(
            tenant,
            new_id(),
            "settle",
            "settle",
            now,
            "req",
            now,
            payload={"reservation_id": f"r{i}", "status": status},
        )
        for i, status in enumerate(("completed", "not-placed", "busy"))
    ]
    with outbox.sessions.begin() as s:
        s.add_all(jobs)
    ch = channel("127.0.0.1:1", default_timeout=2.0)  # nothing listens there
    broker = make_broker(redis_url, redis_prefix + "relay-test")
    try:
        relay = Relay(
            Store(outbox.sessions, postgres=True),
            broker,
            compliance_pb2_grpc.ComplianceServiceStub(ch),
            DispatcherSettings(),
        )
        relay._settle()
    finally:
        ch.close()
        broker.close()
    with outbox.sessions() as s:
        rows = list(s.scalars(sa.select(JobRow).where(JobRow.id.in_([j.id for j in jobs]))))
    assert len(rows) == 3
    for row in rows:
        assert row.state == "pending"
        assert row.last_error.startswith("StatusCode.UNAVAILABLE")
        assert row.due_at > now

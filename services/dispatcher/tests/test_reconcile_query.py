"""Reconciliation finds every call whose final callback never came, however many older calls
already wait on a status job (the real PostgreSQL of this run)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from leadflow_core.db import make_engine, make_sessionmaker
from leadflow_core.timestamps import utcnow
from leadflow_dispatcher.models import DialAttemptRow, JobRow
from leadflow_dispatcher.store import Store


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = make_engine(database_url)
    yield Store(make_sessionmaker(engine), postgres=True)
    engine.dispose()


def _dialed(store: Store, tenant: str, lead_id: str, seconds_ago: float) -> None:
    now = utcnow()
    with store.sessions.begin() as s:
        s.add(
            DialAttemptRow(
                id=uuid.uuid4().hex,
                tenant=tenant,
                lead_id=lead_id,
                attempt=1,
                state="dialed",
                tries=1,
                provider="twilio",
                provider_call_id="CA" + uuid.uuid4().hex,
                claimed_at=now - timedelta(seconds=seconds_ago),
                dialed_at=now - timedelta(seconds=seconds_ago),
            )
        )


def _status_jobs(store: Store, tenant: str) -> list[str]:
    with store.sessions() as s:
        return list(
            s.scalars(sa.select(JobRow.lead_id).where(JobRow.tenant == tenant, JobRow.kind == "call_status"))
        )


@pytest.fixture
def tenant(store: Store) -> Iterator[str]:
    name = f"rc-{uuid.uuid4().hex[:8]}"
    yield name
    # Later modules' relays share this database: leave them no calls or jobs of a made-up tenant.
    with store.sessions.begin() as s:
        s.execute(sa.delete(JobRow).where(JobRow.tenant == name))
        s.execute(sa.delete(DialAttemptRow).where(DialAttemptRow.tenant == name))


def test_newer_lost_call_is_not_hidden_behind_calls_already_being_reconciled(
    store: Store, tenant: str
) -> None:
    for index in range(3):
        _dialed(store, tenant, f"old{index}", seconds_ago=600 + index)
    assert store.calls_to_reconcile(60, limit=2) == 2
    assert store.calls_to_reconcile(60, limit=2) == 1  # the third old call, not the first two again
    _dialed(store, tenant, "new", seconds_ago=120)
    _dialed(store, tenant, "recent", seconds_ago=5)  # within the timeout: its callback may still come
    # Three calls hold status jobs already and would fill a page of 2: the new one is still found.
    assert store.calls_to_reconcile(60, limit=2) == 1
    assert sorted(_status_jobs(store, tenant)) == ["new", "old0", "old1", "old2"]
    assert store.calls_to_reconcile(60, limit=2) == 0

"""A reservation is settled once (`Repository.settle_reservation`): the statement's own guard
decides, so of settlers racing for one reservation exactly one wins, on PostgreSQL and SQLite;
a call never placed takes its reservation and its contact attempt away."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import sqlalchemy as sa

from leadflow_compliance.models import AuditRow, ContactAttemptRow, ReservationRow
from leadflow_compliance.repository import Repository, Settlement
from leadflow_core.timestamps import as_utc


def _reserve(repo: Repository, tenant: str, now: datetime) -> str:
    rid = uuid.uuid4().hex
    repo.add_reservation(
        ReservationRow(
            reservation_id=rid,
            tenant=tenant,
            attempt_id=f"a-{rid}",
            subject_hash=uuid.uuid4().hex[:32],
            created_at=now,
            decision={},
            estimated_cost_usd="0.03",
            day=now.date(),
            estimate_micros=30_000,
        ),
        now,
    )
    return rid


def _attempts(repo: Repository, rid: str) -> int:
    with repo.sessions() as s:
        query = sa.select(sa.func.count()).where(ContactAttemptRow.reservation_id == rid)
        return int(s.scalar(query) or 0)


def _stored(settlement: Settlement | None) -> bool:
    return settlement is not None and settlement.stored


def _audits(repo: Repository, tenant: str) -> list[tuple[str, str, dict[str, object]]]:
    with repo.sessions() as s:
        rows = s.execute(
            sa.select(AuditRow.action, AuditRow.subject_hash, AuditRow.detail).where(
                AuditRow.tenant == tenant
            )
        ).all()
        return [(a, subject, dict(detail)) for a, subject, detail in rows]


def test_settled_once_with_its_outcome_and_price(repo: Repository) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    rid = _reserve(repo, tenant, now)
    audit = {"tenant": tenant, "at": now, "actor": "test", "action": "settle", "detail": {"n": 1}}
    assert repo.settle_reservation("other-tenant", rid, "completed", "0.04", now, 40_000, audit) is None
    first = repo.settle_reservation(tenant, rid, "completed", "0.04", now, 40_000, audit)
    assert first is not None
    assert first.stored
    # What SettleCall needs, read by the same statement; no price before this settlement.
    assert (first.reservation_id, first.estimate_micros, first.actual_micros) == (rid, 30_000, None)
    again = repo.settle_reservation(tenant, rid, "failed", "9.99", now, 9_990_000, audit)
    assert again is not None
    assert not again.stored
    assert again.actual_micros == 40_000  # the price it was settled at
    assert (again.subject_hash, as_utc(again.created_at)) == (first.subject_hash, now)
    assert not _stored(repo.settle_reservation(tenant, rid, "not_placed", "", now))  # too late to un-place
    row = repo.get_reservation(tenant, rid)
    assert row is not None
    assert (row.outcome, row.actual_cost_usd, row.actual_micros) == ("completed", "0.04", 40_000)
    assert row.settled_at is not None
    assert _attempts(repo, rid) == 1
    assert repo.settle_reservation(tenant, uuid.uuid4().hex, "completed", "", now) is None
    # The audit record went with the one settlement that stored, about the reservation's person.
    assert _audits(repo, tenant) == [("settle", first.subject_hash, {"n": 1})]


def test_a_call_never_placed_takes_its_reservation_and_attempt_away(repo: Repository) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    rid, kept = _reserve(repo, tenant, now), _reserve(repo, tenant, now)
    assert _stored(repo.settle_reservation(tenant, rid, "not_placed", "", now))
    assert repo.settle_reservation(tenant, rid, "not_placed", "", now) is None
    assert repo.get_reservation(tenant, rid) is None
    assert _attempts(repo, rid) == 0
    assert repo.get_reservation(tenant, kept) is not None
    assert _attempts(repo, kept) == 1


def test_of_settlers_racing_for_one_reservation_exactly_one_wins(repo: Repository) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    rids = [_reserve(repo, tenant, now) for _ in range(5)]
    asks = [(rid, outcome) for rid in rids for outcome in ("completed", "failed", "not_placed")] * 2
    with ThreadPoolExecutor(6) as pool:
        won = list(pool.map(lambda a: _stored(repo.settle_reservation(tenant, a[0], a[1], "", now)), asks))
    for rid in rids:
        assert sum(w for (r, _), w in zip(asks, won, strict=True) if r == rid) == 1

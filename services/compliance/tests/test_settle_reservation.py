"""A reservation is settled once (`Repository.settle_reservation`): the statement's own guard
decides, so of settlers racing for one reservation exactly one wins, on PostgreSQL and SQLite;
a call never placed takes its reservation and its contact attempt away."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import sqlalchemy as sa

from leadflow_compliance.models import AuditRow, ContactAttemptRow, ReservationRow
from leadflow_compliance.repository import Repository, Settlement, Settling
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


def test_a_batch_settles_each_reservation_once_in_one_transaction(repo: Repository) -> None:
    """`settle_reservations`: fresh reservations at their own outcome and price (two prices, two
    statements), one settled before answered as such with its earlier price, an unknown one and
    another tenant's id answered None, in the order asked; audit records only for those it
    settled, each about its reservation's person."""
    now = datetime.now(UTC).replace(microsecond=0)
    tenant, other = f"t-{uuid.uuid4().hex[:10]}", f"t-{uuid.uuid4().hex[:10]}"
    cheap, dear, busy, before = (_reserve(repo, tenant, now) for _ in range(4))
    theirs = _reserve(repo, other, now)
    assert _stored(repo.settle_reservation(tenant, before, "completed", "0.02", now, 20_000))

    def ask(rid: str, outcome: str, cost: str, micros: int | None, who: str = tenant) -> Settling:
        audit = {"tenant": who, "at": now, "actor": "test", "action": "settle", "detail": {"rid": rid}}
        return Settling(who, rid, outcome, cost, micros, audit)

    unknown = uuid.uuid4().hex
    answers = repo.settle_reservations(
        [
            ask(cheap, "completed", "0.01", 10_000),
            ask(before, "failed", "9.99", 9_990_000),
            ask(dear, "completed", "0.05", 50_000),
            ask(unknown, "completed", "0.01", 10_000),
            ask(theirs, "completed", "0.01", 10_000),  # asked as `tenant`'s: not found
            ask(busy, "busy", "", None),
        ],
        now,
    )
    assert [a is not None and a.stored for a in answers] == [True, False, True, False, False, True]
    assert answers[3] is None
    assert answers[4] is None
    assert [a.reservation_id for a in answers if a is not None] == [cheap, before, dear, busy]
    # Settled before this batch at 0.02, which it keeps: the answer carries that price.
    assert answers[1] is not None
    assert answers[1].actual_micros == 20_000
    rows = {rid: repo.get_reservation(tenant, rid) for rid in (cheap, dear, busy, before)}
    got = {rid: (r.outcome, r.actual_cost_usd, r.actual_micros) for rid, r in rows.items() if r is not None}
    assert got == {
        cheap: ("completed", "0.01", 10_000),
        dear: ("completed", "0.05", 50_000),
        busy: ("busy", "", None),
        before: ("completed", "0.02", 20_000),
    }
    theirs_row = repo.get_reservation(other, theirs)
    assert theirs_row is not None
    assert theirs_row.settled_at is None
    subjects = {a.reservation_id: a.subject_hash for a in answers if a is not None}
    assert sorted(
        (action, subject, str(detail["rid"])) for action, subject, detail in _audits(repo, tenant)
    ) == sorted(("settle", subjects[rid], rid) for rid in (cheap, dear, busy))
    assert repo.settle_reservations([], now) == []

"""The batch read of what storage knows about people (`subject_states`) answers each person
exactly as the single read (`subject_state`) does: on real PostgreSQL (its fixed statement with
array parameters, `subject_facts_sql`) and on SQLite (the portable statement)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from leadflow_compliance.models import DncRegistryA, DncRegistryB, DncRegistryState
from leadflow_compliance.repository import Repository, SubjectQuery


def test_a_batch_read_answers_each_person_as_a_single_read(repo: Repository) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    t1, t2 = f"t-{uuid.uuid4().hex[:10]}", f"t-{uuid.uuid4().hex[:10]}"
    a, b, c, mail = (uuid.uuid4().hex[:16] for _ in range(4))
    consent_at = now - timedelta(days=3)
    # Person a of tenant 1: consent (and an unverified later one), a campaign revocation by
    # email, internal DNC, two attempts (one too old to count), a tenant emergency stop.
    repo.record_consent(t1, a, consent_at, {}, "test", now)
    repo.record_consent(t1, a, now - timedelta(days=1), {}, "test", now, verified=False)
    repo.revoke_from_signal(t1, mail, now - timedelta(hours=2), "email", "", "spring", {}, "test")
    repo.add_dnc(t1, a, "asked", "test", now)
    repo.record_attempt(t1, a, now - timedelta(hours=1), "voice")
    repo.record_attempt(t1, a, now - timedelta(days=9), "voice")
    repo.set_emergency_stop(t1, now + timedelta(minutes=5), "storm", "test", now)
    # The same hashes under tenant 2 hold nothing of tenant 1's; b is revoked tenant-wide there.
    repo.revoke(t2, b, now - timedelta(hours=3), "voice", "", "test")
    repo.set_emergency_stop(t2, now - timedelta(minutes=1), "over", "test", now - timedelta(hours=1))
    # c's number is on the live registry slot.
    number = 9_995_550_000 + int(uuid.uuid4().int % 10_000)
    registry = DncRegistryA if repo.registry_slot() == "a" else DncRegistryB
    with repo.sessions.begin() as s:
        s.add(registry(number=number))
    since = now - timedelta(days=7)
    queries = [
        SubjectQuery(t1, a, 2_125_550_001, since, now, consent_at, (mail,), "spring"),
        SubjectQuery(t1, a, 2_125_550_001, since, now, now, (mail,), "autumn"),
        SubjectQuery(t2, a, 2_125_550_001, since, now),
        SubjectQuery(t2, b, None, since, now, None, (), "spring"),
        SubjectQuery(t1, c, number, since, now),
        SubjectQuery(t2, c, number, since + timedelta(days=6, hours=23), now),
    ]
    batch = repo.subject_states(queries)
    single = [repo.subject_state(q) for q in queries]
    assert batch == single
    # And the facts are the ones set up above (the comparison is not between two empty reads).
    assert batch[0].consent_at == consent_at
    assert batch[0].consent_on_file
    assert batch[0].revoked_at is not None
    assert batch[1].revoked_at is None
    assert batch[0].internal_dnc
    assert not batch[2].internal_dnc
    assert len(batch[0].attempts) == 1
    assert batch[0].emergency_stop_reason == "storm"
    assert batch[2].emergency_stop_until is None
    assert batch[3].revoked_at is not None
    assert batch[4].registry_dnc
    assert batch[5].registry_dnc
    assert not batch[0].registry_dnc
    assert repo.subject_states([]) == []


def test_the_batch_read_checks_the_live_registry_slot(repo: Repository) -> None:
    """An import flips the live National DNC Registry slot; the batch read follows it."""
    now = datetime.now(UTC)
    number = 9_985_550_000 + int(uuid.uuid4().int % 10_000)
    query = SubjectQuery(f"t-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex[:16], number, now, now)
    with repo.sessions.begin() as s:
        s.add(DncRegistryB(number=number))
        state = s.get(DncRegistryState, 1)
        before = state.active_slot if state is not None else None
    try:
        for slot, listed in (("b", True), ("a", False)):
            with repo.sessions.begin() as s:
                s.merge(DncRegistryState(id=1, active_slot=slot))
            repo.forget_registry_slot()
            (state_now,) = repo.subject_states([query])
            assert state_now.registry_dnc is listed, slot
            assert repo.subject_state(query).registry_dnc is listed, slot
    finally:
        with repo.sessions.begin() as s:
            if before is None:
                s.execute(sa.delete(DncRegistryState).where(DncRegistryState.id == 1))
            else:
                s.merge(DncRegistryState(id=1, active_slot=before))
            s.execute(sa.delete(DncRegistryB).where(DncRegistryB.number == number))
        repo.forget_registry_slot()

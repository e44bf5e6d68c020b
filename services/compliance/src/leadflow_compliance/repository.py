"""Storage of the compliance service: every query scoped by tenant, numbers kept as hashes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from leadflow_compliance.accounting import DayTotals, HeldReservation
from leadflow_compliance.models import (
    AuditRow,
    ConsentRow,
    ContactAttemptRow,
    DncListEntry,
    DncListLoad,
    DncRegistryA,
    DncRegistryB,
    DncRegistryState,
    DncRow,
    EmergencyStopRow,
    ReservationRow,
    RevocationRow,
    TenantRow,
)
from leadflow_compliance.subject_facts_sql import FACTS_BY_SLOT
from leadflow_core.timestamps import as_utc

# The tables themselves, for Core INSERTs on hot paths (see `Repository.audit_many`).
_CONSENTS = cast(sa.Table, ConsentRow.__table__)
_AUDIT = cast(sa.Table, AuditRow.__table__)
_RESERVATIONS = cast(sa.Table, ReservationRow.__table__)
# What SettleCall needs of a reservation, in `Settlement`'s order.
_SETTLING = (
    _RESERVATIONS.c.reservation_id,
    _RESERVATIONS.c.subject_hash,
    _RESERVATIONS.c.created_at,
    _RESERVATIONS.c.estimate_micros,
    _RESERVATIONS.c.actual_micros,
)


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Settlement:
    """A reservation as SettleCall needs it, and whether this call settled it (`stored`; else
    it was settled before)."""

    reservation_id: str
    subject_hash: str
    created_at: datetime
    estimate_micros: int
    # The price it was settled at before this call (None: its estimate, or settled just now).
    actual_micros: int | None
    stored: bool


@dataclass(frozen=True)
class Settling:
    """One placed call to settle (`Repository.settle_reservations`); `audit`: see `audit`."""

    tenant: str
    reservation_id: str
    outcome: str
    cost: str
    actual_micros: int | None
    audit: dict[str, Any]


@dataclass(frozen=True)
class SubjectQuery:
    """What to read about one person for one tenant: `consent_check_at` also asks whether consent
    given at that instant is on file; revocations count for the number and for `extra_subjects`
    (the lead's email), tenant-wide or for `campaign`."""

    tenant: str
    subject: str
    national_number: int | None
    attempts_since: datetime
    now: datetime
    consent_check_at: datetime | None = None
    extra_subjects: tuple[str, ...] = ()
    campaign: str = ""


@dataclass(frozen=True)
class SubjectState:
    """What storage knows about one person for one tenant."""

    consent_at: datetime | None
    revoked_at: datetime | None
    internal_dnc: bool
    registry_dnc: bool
    attempts: tuple[datetime, ...]
    emergency_stop_until: datetime | None
    emergency_stop_reason: str
    # Whether consent at exactly the instant asked about is already on file (ingest records it once).
    consent_on_file: bool = False


@dataclass(frozen=True)
class PendingConsent:
    """Consent evidence a lead brought, written in the same transaction as its decision's audit."""

    subject: str
    consented_at: datetime
    evidence: dict[str, Any]
    actor: str
    verified: bool = True


@dataclass(frozen=True)
class StoredRevocation:
    revocation_id: str
    revoked_at: datetime
    # The same channel and message id was stored before (a redelivery).
    duplicate: bool


class Repository:
    def __init__(self, sessions: sessionmaker[Session], slot_ttl_seconds: float = 1.0) -> None:
        self.sessions = sessions
        self.slot_ttl = slot_ttl_seconds
        self._slot: tuple[float, str] = (0.0, "a")

    def registry_slot(self) -> str:
        """The live DNC Registry slot, re-read at most once a second (an import flips it)."""
        expires, slot = self._slot
        now = time.monotonic()
        if expires > now:
            return slot
        with self.sessions() as s:
            slot = s.scalar(select(DncRegistryState.active_slot).where(DncRegistryState.id == 1)) or "a"
        self._slot = (now + self.slot_ttl, slot)
        return slot

    def forget_registry_slot(self) -> None:
        self._slot = (0.0, "a")

    # --- tenants -----------------------------------------------------------------------------

    def get_tenant(self, name: str) -> TenantRow | None:
        with self.sessions() as s:
            return s.get(TenantRow, name)

    def list_tenants(self, include_inactive: bool) -> list[TenantRow]:
        with self.sessions() as s:
            q = select(TenantRow).order_by(TenantRow.name)
            if not include_inactive:
                q = q.where(TenantRow.active.is_(True))
            return list(s.scalars(q))

    def rewrite_spec(self, name: str, rewrite: Callable[[dict[str, Any]], tuple[dict[str, Any], int]]) -> int:
        """Rewrite a tenant's stored spec under a row lock (secret rotation); the desired state
        is unchanged, so the revision is kept. Returns what `rewrite` counted."""
        with self.sessions.begin() as s:
            row = s.get(TenantRow, name, with_for_update=True)
            if row is None:
                return 0
            spec, count = rewrite(row.spec)
            if count:
                row.spec = spec
            return count

    def upsert_tenant(self, name: str, spec: dict[str, Any], now: datetime) -> tuple[TenantRow, bool, bool]:
        """Store the desired state; returns (row, created, changed). Revision bumps on change only."""
        try:
            return self._upsert_tenant(name, spec, now)
        except IntegrityError:
            # A concurrent apply created it first: this one is now an update.
            return self._upsert_tenant(name, spec, now)

    def _upsert_tenant(self, name: str, spec: dict[str, Any], now: datetime) -> tuple[TenantRow, bool, bool]:
        with self.sessions.begin() as s:
            row = s.get(TenantRow, name, with_for_update=True)
            if row is None:
                row = TenantRow(
                    name=name,
                    spec=spec,
                    active=bool(spec.get("active", True)),
                    paused=bool(spec.get("paused", False)),
                    paused_reason="",
                    revision=1,
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
                return row, True, True
            if row.spec == spec:
                return row, False, False
            row.spec = spec
            row.active = bool(spec.get("active", True))
            row.paused = bool(spec.get("paused", False))
            row.revision += 1
            row.updated_at = now
            return row, False, True

    def update_tenant_flags(
        self,
        name: str,
        now: datetime,
        *,
        paused: bool | None = None,
        active: bool | None = None,
        reason: str = "",
    ) -> TenantRow | None:
        with self.sessions.begin() as s:
            row = s.get(TenantRow, name, with_for_update=True)
            if row is None:
                return None
            spec = dict(row.spec)
            changed = False
            if paused is not None and row.paused != paused:
                row.paused, spec["paused"], row.paused_reason, changed = paused, paused, reason, True
            if active is not None and row.active != active:
                row.active, spec["active"], changed = active, active, True
            if changed:
                row.spec = spec
                row.revision += 1
                row.updated_at = now
            return row

    # --- what the rules need about one person -------------------------------------------------

    def subject_state(self, q: SubjectQuery) -> SubjectState:
        """Everything about one person in two round trips (a single evaluation or dial; a batch
        reads all its people at once with `subject_states`)."""
        tenant, subject, national_number = q.tenant, q.subject, q.national_number
        attempts_since, now, consent_check_at = q.attempts_since, q.now, q.consent_check_at
        extra_subjects, campaign = q.extra_subjects, q.campaign
        consent = select(func.max(ConsentRow.consented_at)).where(
            ConsentRow.tenant == tenant, ConsentRow.subject_hash == subject, ConsentRow.verified.is_(True)
        )
        revoked = select(func.max(RevocationRow.revoked_at)).where(
            RevocationRow.tenant == tenant,
            RevocationRow.subject_hash.in_((subject, *extra_subjects)),
            RevocationRow.campaign.in_(("", campaign)) if campaign else RevocationRow.campaign == "",
        )
        internal = select(DncRow.subject_hash).where(DncRow.tenant == tenant, DncRow.subject_hash == subject)
        # Only the live slot is read: an import truncates and locks the other one.
        registry = DncRegistryA if self.registry_slot() == "a" else DncRegistryB
        number = -1 if national_number is None else national_number
        in_registry = select(registry.number).where(registry.number == number)
        stop = (
            select(EmergencyStopRow.until, EmergencyStopRow.reason)
            .where(EmergencyStopRow.scope.in_(("", tenant)), EmergencyStopRow.until > now)
            .order_by(EmergencyStopRow.until.desc())
            .limit(1)
        )
        on_file = (
            select(ConsentRow.consent_id)
            .where(
                ConsentRow.tenant == tenant,
                ConsentRow.subject_hash == subject,
                ConsentRow.consented_at == consent_check_at,
            )
            .exists()
            if consent_check_at is not None
            else sa.false()
        )
        query = select(
            consent.scalar_subquery(),
            revoked.scalar_subquery(),
            internal.exists(),
            in_registry.exists(),
            stop.with_only_columns(EmergencyStopRow.until).scalar_subquery(),
            stop.with_only_columns(EmergencyStopRow.reason).scalar_subquery(),
            on_file,
        )
        with self.sessions() as s:
            row = s.execute(query).one()
            consent_at, revoked_at, is_internal, registered, stop_until, stop_reason, has_it = row
            attempts = tuple(
                as_utc(at)
                for at in s.scalars(
                    select(ContactAttemptRow.at).where(
                        ContactAttemptRow.tenant == tenant,
                        ContactAttemptRow.subject_hash == subject,
                        ContactAttemptRow.at > attempts_since,
                    )
                )
            )
        return SubjectState(
            consent_at=as_utc(consent_at) if consent_at else None,
            revoked_at=as_utc(revoked_at) if revoked_at else None,
            internal_dnc=bool(is_internal),
            registry_dnc=bool(registered),
            attempts=attempts,
            emergency_stop_until=as_utc(stop_until) if stop_until else None,
            emergency_stop_reason=stop_reason or "",
            consent_on_file=bool(has_it),
        )

    def subject_states(self, queries: Sequence[SubjectQuery]) -> list[SubjectState]:
        """`subject_state` for many people in one statement and one round trip for the whole
        batch, each answer the same as its own query would give."""
        if not queries:
            return []
        tenants = sorted({q.tenant for q in queries})
        subjects = sorted({q.subject for q in queries})
        every_subject = sorted({s for q in queries for s in (q.subject, *q.extra_subjects)})
        numbers = sorted({q.national_number for q in queries if q.national_number is not None})
        checks = sorted({q.consent_check_at for q in queries if q.consent_check_at is not None})
        earliest_now = min(q.now for q in queries)
        earliest_since = min(q.attempts_since for q in queries)
        # Tenant and subject lists filter on the index's leading columns; the few rows of other
        # pairs (tenant A's subject x read for tenant B's lead) are dropped below, never used.
        # Every kind of fact is one branch of ONE statement (a round trip and a statement per
        # batch), each row shaped (kind, tenant, subject, campaign, at, number, reason).
        slot: Literal["a", "b"] = "b" if self.registry_slot() == "b" else "a"
        with self.sessions() as s:
            if s.get_bind().dialect.name == "postgresql":
                statement: sa.Executable = FACTS_BY_SLOT[slot]
                params: dict[str, Any] = {
                    "tenants": tenants,
                    "subjects": subjects,
                    "every_subject": every_subject,
                    "scopes": ["", *tenants],
                    "earliest_now": earliest_now,
                    "earliest_since": earliest_since,
                    "checks": checks,
                    "numbers": numbers,
                }
                rows = s.execute(statement, params).all()
            else:
                portable = _portable_facts(
                    slot, tenants, subjects, every_subject, numbers, checks, earliest_now, earliest_since
                )
                rows = s.execute(portable).all()
        facts: dict[str, list[Any]] = {}
        for row in rows:
            facts.setdefault(row[0], []).append(tuple(row[1:]))
        consent_rows = [(t, subj, at) for t, subj, _, at, _, _ in facts.get("consent", ())]
        on_file_rows = [(t, subj, at) for t, subj, _, at, _, _ in facts.get("on_file", ())]
        revocation_rows = [(t, subj, c, at) for t, subj, c, at, _, _ in facts.get("revoked", ())]
        internal_rows = [(t, subj) for t, subj, _, _, _, _ in facts.get("internal", ())]
        registered = {int(n) for _, _, _, _, n, _ in facts.get("registry", ())}
        stop_rows = [(t, at, why) for t, _, _, at, _, why in facts.get("stop", ())]
        attempt_rows = [(t, subj, at) for t, subj, _, at, _, _ in facts.get("attempt", ())]
        consents = {(t, subj): as_utc(at) for t, subj, at in consent_rows}
        on_file = {(t, subj, as_utc(at)) for t, subj, at in on_file_rows}
        revocations: dict[tuple[str, str], list[tuple[str, datetime]]] = {}
        for t, subj, campaign, at in revocation_rows:
            revocations.setdefault((t, subj), []).append((campaign, as_utc(at)))
        internal = {(t, subj) for t, subj in internal_rows}
        stops = [(scope, as_utc(until), reason) for scope, until, reason in stop_rows]
        attempts: dict[tuple[str, str], list[datetime]] = {}
        for t, subj, at in attempt_rows:
            attempts.setdefault((t, subj), []).append(as_utc(at))
        out: list[SubjectState] = []
        for q in queries:
            key = (q.tenant, q.subject)
            campaigns = ("", q.campaign) if q.campaign else ("",)
            revoked = [
                at
                for subj in (q.subject, *q.extra_subjects)
                for campaign, at in revocations.get((q.tenant, subj), ())
                if campaign in campaigns
            ]
            live = [(u, why) for scope, u, why in stops if scope in ("", q.tenant) and u > q.now]
            stop_until, stop_reason = max(live, key=lambda x: x[0]) if live else (None, "")
            check = q.consent_check_at
            out.append(
                SubjectState(
                    consent_at=consents.get(key),
                    revoked_at=max(revoked) if revoked else None,
                    internal_dnc=key in internal,
                    registry_dnc=q.national_number is not None and q.national_number in registered,
                    attempts=tuple(sorted(at for at in attempts.get(key, ()) if at > q.attempts_since)),
                    emergency_stop_until=stop_until,
                    emergency_stop_reason=stop_reason,
                    consent_on_file=check is not None and (q.tenant, q.subject, as_utc(check)) in on_file,
                )
            )
        return out

    def state_dnc(
        self, codes: Sequence[str], national_number: int | None
    ) -> tuple[frozenset[str], dict[str, datetime]]:
        """For state lists `codes`: those carrying the number, and when each was last loaded."""
        if not codes:
            return frozenset(), {}
        ids = {"state:" + code: code for code in codes}
        number = -1 if national_number is None else national_number
        with self.sessions() as s:
            on = s.scalars(
                select(DncListEntry.list_id).where(
                    DncListEntry.list_id.in_(ids), DncListEntry.number == number
                )
            ).all()
            loads = s.execute(
                select(DncListLoad.list_id, DncListLoad.loaded_at).where(DncListLoad.list_id.in_(ids))
            ).all()
        return frozenset(ids[i] for i in on), {ids[i]: as_utc(at) for i, at in loads}

    # --- consent -----------------------------------------------------------------------------

    def record_consent(
        self,
        tenant: str,
        subject: str,
        consented_at: datetime,
        evidence: dict[str, Any],
        actor: str,
        now: datetime,
        verified: bool = True,
    ) -> str:
        consent_id = new_id()
        with self.sessions.begin() as s:
            s.add(
                ConsentRow(
                    consent_id=consent_id,
                    tenant=tenant,
                    subject_hash=subject,
                    consented_at=consented_at,
                    recorded_at=now,
                    evidence=evidence,
                    actor=actor,
                    verified=verified,
                )
            )
        return consent_id

    def has_consent_at(self, tenant: str, subject: str, consented_at: datetime) -> bool:
        with self.sessions() as s:
            return (
                s.scalar(
                    select(ConsentRow.consent_id).where(
                        ConsentRow.tenant == tenant,
                        ConsentRow.subject_hash == subject,
                        ConsentRow.consented_at == consented_at,
                    )
                )
                is not None
            )

    def revoke(self, tenant: str, subject: str, at: datetime, channel: str, note: str, actor: str) -> None:
        with self.sessions.begin() as s:
            s.add(
                RevocationRow(
                    revocation_id=new_id(),
                    tenant=tenant,
                    subject_hash=subject,
                    revoked_at=at,
                    channel=channel,
                    note=note,
                    actor=actor,
                )
            )

    def revoke_from_signal(
        self,
        tenant: str,
        subject: str,
        at: datetime,
        channel: str,
        message_id: str,
        campaign: str,
        evidence: dict[str, Any],
        actor: str,
    ) -> StoredRevocation:
        """Store one revocation with its evidence; a message already stored returns that one."""
        msg = message_id or None

        def existing() -> RevocationRow | None:
            if msg is None:
                return None
            with self.sessions() as s:
                return s.scalars(
                    select(RevocationRow).where(
                        RevocationRow.tenant == tenant,
                        RevocationRow.channel == channel,
                        RevocationRow.message_id == msg,
                        RevocationRow.subject_hash == subject,
                    )
                ).first()

        found = existing()
        if found is not None:
            return StoredRevocation(found.revocation_id, as_utc(found.revoked_at), True)
        row = RevocationRow(
            revocation_id=new_id(),
            tenant=tenant,
            subject_hash=subject,
            revoked_at=at,
            channel=channel,
            note=f"{channel} opt-out",
            actor=actor,
            campaign=campaign,
            message_id=msg,
            evidence=evidence,
        )
        try:
            with self.sessions.begin() as s:
                s.add(row)
        except IntegrityError:
            # A concurrent redelivery stored it first.
            found = existing()
            if found is None:
                raise
            return StoredRevocation(found.revocation_id, as_utc(found.revoked_at), True)
        return StoredRevocation(row.revocation_id, at, False)

    def claim_confirmation(
        self, tenant: str, revocation_id: str, now: datetime, window: timedelta
    ) -> tuple[bool, str]:
        """Atomically take the one confirmation allowed within `window` of the revocation."""
        with self.sessions.begin() as s:
            row = s.get(RevocationRow, revocation_id, with_for_update=True)
            if row is None or row.tenant != tenant:
                return False, "unknown revocation"
            if row.confirmation_claimed_at is not None:
                return False, "already sent"
            if now - as_utc(row.revoked_at) > window:
                return False, "more than 5 minutes after the revocation"
            row.confirmation_claimed_at = now
            return True, ""

    # --- DNC -----------------------------------------------------------------------------

    def add_dnc(self, tenant: str, subject: str, reason: str, actor: str, now: datetime) -> bool:
        with self.sessions.begin() as s:
            if s.get(DncRow, (tenant, subject)) is not None:
                return False
            s.add(DncRow(tenant=tenant, subject_hash=subject, reason=reason, actor=actor, added_at=now))
        return True

    def remove_dnc(self, tenant: str, subject: str) -> bool:
        with self.sessions.begin() as s:
            result = s.execute(delete(DncRow).where(DncRow.tenant == tenant, DncRow.subject_hash == subject))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # --- contact attempts ---------------------------------------------------------------------

    def record_attempt(
        self, tenant: str, subject: str, at: datetime, channel: str, reservation_id: str | None = None
    ) -> None:
        with self.sessions.begin() as s:
            s.add(
                ContactAttemptRow(
                    tenant=tenant, subject_hash=subject, at=at, channel=channel, reservation_id=reservation_id
                )
            )

    # --- emergency stop -----------------------------------------------------------------------

    def set_emergency_stop(self, scope: str, until: datetime, reason: str, actor: str, now: datetime) -> None:
        with self.sessions.begin() as s:
            row = s.get(EmergencyStopRow, scope, with_for_update=True)
            if row is None:
                s.add(EmergencyStopRow(scope=scope, until=until, reason=reason, actor=actor, set_at=now))
            else:
                row.until, row.reason, row.actor, row.set_at = until, reason, actor, now

    def clear_emergency_stop(self, scope: str) -> None:
        with self.sessions.begin() as s:
            s.execute(delete(EmergencyStopRow).where(EmergencyStopRow.scope == scope))

    # --- reservations -------------------------------------------------------------------------

    def reservation_for_attempt(self, tenant: str, attempt_id: str) -> ReservationRow | None:
        with self.sessions() as s:
            return s.scalars(
                select(ReservationRow).where(
                    ReservationRow.tenant == tenant, ReservationRow.attempt_id == attempt_id
                )
            ).first()

    def get_reservation(self, tenant: str, reservation_id: str) -> ReservationRow | None:
        with self.sessions() as s:
            row = s.get(ReservationRow, reservation_id)
            return row if row is not None and row.tenant == tenant else None

    def add_reservation(self, row: ReservationRow, attempt_at: datetime) -> ReservationRow:
        """Store it with its contact attempt; a concurrent twin wins and is returned instead."""
        try:
            with self.sessions.begin() as s:
                s.add(row)
                s.flush()
                s.add(
                    ContactAttemptRow(
                        tenant=row.tenant,
                        subject_hash=row.subject_hash,
                        at=attempt_at,
                        channel="call",
                        reservation_id=row.reservation_id,
                    )
                )
            return row
        except IntegrityError:
            existing = self.reservation_for_attempt(row.tenant, row.attempt_id)
            if existing is None:
                raise
            return existing

    def day_totals(self, tenant: str, day: date) -> DayTotals:
        """The tenant day's placed calls and spend (the price where settled, else the estimate),
        and its unsettled reservations: what Redis's day account is rebuilt from."""
        spend = func.coalesce(ReservationRow.actual_micros, ReservationRow.estimate_micros)
        with self.sessions() as s:
            calls, total = s.execute(
                select(func.count(), func.coalesce(func.sum(spend), 0)).where(
                    ReservationRow.tenant == tenant, ReservationRow.day == day
                )
            ).one()
            held = s.execute(
                select(
                    ReservationRow.reservation_id, ReservationRow.estimate_micros, ReservationRow.created_at
                ).where(
                    ReservationRow.tenant == tenant,
                    ReservationRow.day == day,
                    ReservationRow.settled_at.is_(None),
                )
            ).all()
        return DayTotals(int(calls), int(total), [HeldReservation(r, int(e), as_utc(c)) for r, e, c in held])

    def settle_reservation(
        self,
        tenant: str,
        reservation_id: str,
        outcome: str,
        cost: str,
        now: datetime,
        actual_micros: int | None = None,
        audit: dict[str, Any] | None = None,
    ) -> Settlement | None:
        """Mark settled once (`Settlement.stored`); None when unknown. The guard is the
        statement's own WHERE (still unsettled), so of two settlers at once only one changes the
        row, and its RETURNING is the read: one statement instead of a load and an update. When
        this call settles, `audit` (the keyword arguments of `audit`, its subject the
        reservation's) is recorded in the same commit."""
        this = (
            (_RESERVATIONS.c.reservation_id == reservation_id)
            & (_RESERVATIONS.c.tenant == tenant)
            & _RESERVATIONS.c.settled_at.is_(None)
        )
        with self.sessions.begin() as s:
            conn = s.connection()
            if outcome == "not_placed":
                # The call never happened: no contact attempt, and the attempt may reserve again.
                changed = conn.execute(_RESERVATIONS.delete().where(this).returning(*_SETTLING)).first()
                if changed is not None:
                    attempts = ContactAttemptRow.reservation_id == reservation_id
                    conn.execute(delete(ContactAttemptRow).where(attempts))
            else:
                changed = conn.execute(
                    _RESERVATIONS.update()
                    .where(this)
                    .values(
                        settled_at=now, outcome=outcome, actual_cost_usd=cost, actual_micros=actual_micros
                    )
                    .returning(*_SETTLING)
                ).first()
            if changed is None:
                found = conn.execute(
                    select(*_SETTLING).where(
                        _RESERVATIONS.c.reservation_id == reservation_id, _RESERVATIONS.c.tenant == tenant
                    )
                ).first()
                if found is None:
                    return None
                return _settlement(found, stored=False)
            if audit is not None:
                conn.execute(
                    _AUDIT.insert(), [_audit_values(new_id(), {**audit, "subject": changed.subject_hash})]
                )
            return _settlement(changed, stored=True)

    def settle_reservations(self, calls: Sequence[Settling], now: datetime) -> list[Settlement | None]:
        """`settle_reservation` for placed calls (not releases), each reservation at most once
        in `calls`, in ONE transaction: one guarded UPDATE per distinct (outcome, cost, price),
        one read of those it did not change, one INSERT of the audit records of those it did.
        Answers in the order of `calls`."""
        if not calls:
            return []
        groups: dict[tuple[str, str, int | None], list[tuple[str, str]]] = {}
        for c in calls:
            groups.setdefault((c.outcome, c.cost, c.actual_micros), []).append((c.tenant, c.reservation_id))
        key = (_RESERVATIONS.c.tenant, _RESERVATIONS.c.reservation_id)
        changed: dict[tuple[str, str], Settlement] = {}
        with self.sessions.begin() as s:
            conn = s.connection()
            for (outcome, cost, micros), keys in groups.items():
                for row in conn.execute(
                    _RESERVATIONS.update()
                    .where(sa.tuple_(*key).in_(keys), _RESERVATIONS.c.settled_at.is_(None))
                    .values(settled_at=now, outcome=outcome, actual_cost_usd=cost, actual_micros=micros)
                    .returning(_RESERVATIONS.c.tenant, *_SETTLING)
                ):
                    changed[(row.tenant, row.reservation_id)] = _settlement(row, stored=True)
            rest = [
                (c.tenant, c.reservation_id) for c in calls if (c.tenant, c.reservation_id) not in changed
            ]
            before: dict[tuple[str, str], Settlement] = {}
            if rest:
                before = {
                    (row.tenant, row.reservation_id): _settlement(row, stored=False)
                    for row in conn.execute(
                        select(_RESERVATIONS.c.tenant, *_SETTLING).where(sa.tuple_(*key).in_(rest))
                    )
                }
            records = [
                _audit_values(
                    new_id(), {**c.audit, "subject": changed[(c.tenant, c.reservation_id)].subject_hash}
                )
                for c in calls
                if (c.tenant, c.reservation_id) in changed
            ]
            if records:
                conn.execute(_AUDIT.insert(), records)
        return [
            changed.get((c.tenant, c.reservation_id)) or before.get((c.tenant, c.reservation_id))
            for c in calls
        ]

    def price_reservation(self, tenant: str, reservation_id: str, cost: str, actual_micros: int) -> bool:
        """The provider's price of a call settled without one; once (a price is never replaced)."""
        with self.sessions.begin() as s:
            done = s.execute(
                update(ReservationRow)
                .where(
                    ReservationRow.reservation_id == reservation_id,
                    ReservationRow.tenant == tenant,
                    ReservationRow.settled_at.is_not(None),
                    ReservationRow.actual_micros.is_(None),
                )
                .values(actual_micros=actual_micros, actual_cost_usd=cost)
                .returning(ReservationRow.reservation_id)
            ).first()
            return done is not None

    # --- audit -----------------------------------------------------------------------------

    def audit(
        self,
        *,
        tenant: str,
        at: datetime,
        actor: str,
        action: str,
        lead_id: str = "",
        subject: str = "",
        decision: dict[str, Any] | None = None,
        rules_version: str = "",
        detail: dict[str, Any] | None = None,
        consent: PendingConsent | None = None,
    ) -> str:
        """Durably record one decision or change; `consent` is stored in the same commit (one
        round trip and one WAL flush fewer per ingested lead, and never one without the other)."""
        (record_id,) = self.audit_many(
            [
                {
                    "tenant": tenant,
                    "at": at,
                    "actor": actor,
                    "action": action,
                    "lead_id": lead_id,
                    "subject": subject,
                    "decision": decision,
                    "rules_version": rules_version,
                    "detail": detail,
                    "consent": consent,
                }
            ]
        )
        return record_id

    def audit_many(self, records: list[dict[str, Any]]) -> list[str]:
        """Many audit records (the keyword arguments of `audit`) and their consents in one commit.
        Core INSERTs, one executemany per table: the ORM's flush of the same rows cost twice the
        Python CPU per lead at the few leads per batch seen under load (~0.67 vs ~0.33 ms)."""
        ids = [new_id() for _ in records]
        consents: list[dict[str, Any]] = []
        audits: list[dict[str, Any]] = []
        seen_consents: set[tuple[str, str, datetime]] = set()
        for record_id, r in zip(ids, records, strict=True):
            consent: PendingConsent | None = r.get("consent")
            # Two leads of one person in a batch carry the same consent: store it once.
            if (
                consent is not None
                and (r["tenant"], consent.subject, consent.consented_at) not in seen_consents
            ):
                seen_consents.add((r["tenant"], consent.subject, consent.consented_at))
                consents.append(
                    {
                        "consent_id": new_id(),
                        "tenant": r["tenant"],
                        "subject_hash": consent.subject,
                        "consented_at": consent.consented_at,
                        "recorded_at": r["at"],
                        "evidence": consent.evidence,
                        "actor": consent.actor,
                        "verified": consent.verified,
                    }
                )
            audits.append(_audit_values(record_id, r))
        with self.sessions.begin() as s:
            if consents:
                s.execute(_CONSENTS.insert(), consents)
            if audits:
                s.execute(_AUDIT.insert(), audits)
        return ids

    def export_audit(self, tenant: str, start: datetime, end: datetime) -> Iterator[AuditRow]:
        with self.sessions() as s:
            q = (
                select(AuditRow)
                .where(AuditRow.tenant == tenant, AuditRow.at >= start, AuditRow.at < end)
                .order_by(AuditRow.at, AuditRow.record_id)
                .execution_options(yield_per=1000)
            )
            yield from s.scalars(q)


def _settlement(row: Any, stored: bool) -> Settlement:
    """`row`: the `_SETTLING` columns (a RETURNING or a SELECT)."""
    return Settlement(
        reservation_id=row.reservation_id,
        subject_hash=row.subject_hash,
        created_at=row.created_at,
        estimate_micros=row.estimate_micros,
        # RETURNING gives the new values: a reservation settled just now had no price before.
        actual_micros=None if stored else row.actual_micros,
        stored=stored,
    )


def _audit_values(record_id: str, r: dict[str, Any]) -> dict[str, Any]:
    """An audit row's columns from the keyword arguments of `Repository.audit`."""
    return {
        "record_id": record_id,
        "tenant": r["tenant"],
        "at": r["at"],
        "actor": r["actor"],
        "action": r["action"],
        "lead_id": r.get("lead_id", ""),
        "subject_hash": r.get("subject", ""),
        "decision": r.get("decision"),
        "rules_version": r.get("rules_version", ""),
        "detail": r.get("detail") or {},
    }


def _portable_facts(
    slot: str,
    tenants: list[str],
    subjects: list[str],
    every_subject: list[str],
    numbers: list[int],
    checks: list[datetime],
    earliest_now: datetime,
    earliest_since: datetime,
) -> sa.CompoundSelect[Any]:
    """`subject_facts_sql`'s statement for any database (SQLite in local runs)."""
    registry = DncRegistryB if slot == "b" else DncRegistryA
    no_at = sa.null().cast(sa.DateTime(timezone=True))
    no_number = sa.null().cast(sa.BigInteger)

    def kind(name: str) -> sa.Label[str]:
        return sa.literal(name, sa.String).label("kind")

    branches = [
        select(
            kind("consent"),
            ConsentRow.tenant,
            ConsentRow.subject_hash,
            sa.literal(""),
            func.max(ConsentRow.consented_at),
            no_number,
            sa.literal(""),
        )
        .where(
            ConsentRow.tenant.in_(tenants),
            ConsentRow.subject_hash.in_(subjects),
            ConsentRow.verified.is_(True),
        )
        .group_by(ConsentRow.tenant, ConsentRow.subject_hash),
        select(
            kind("revoked"),
            RevocationRow.tenant,
            RevocationRow.subject_hash,
            RevocationRow.campaign,
            func.max(RevocationRow.revoked_at),
            no_number,
            sa.literal(""),
        )
        .where(RevocationRow.tenant.in_(tenants), RevocationRow.subject_hash.in_(every_subject))
        .group_by(RevocationRow.tenant, RevocationRow.subject_hash, RevocationRow.campaign),
        select(
            kind("internal"),
            DncRow.tenant,
            DncRow.subject_hash,
            sa.literal(""),
            no_at,
            no_number,
            sa.literal(""),
        ).where(DncRow.tenant.in_(tenants), DncRow.subject_hash.in_(subjects)),
        select(
            kind("stop"),
            EmergencyStopRow.scope,
            sa.literal(""),
            sa.literal(""),
            EmergencyStopRow.until,
            no_number,
            EmergencyStopRow.reason,
        ).where(EmergencyStopRow.scope.in_(("", *tenants)), EmergencyStopRow.until > earliest_now),
        select(
            kind("attempt"),
            ContactAttemptRow.tenant,
            ContactAttemptRow.subject_hash,
            sa.literal(""),
            ContactAttemptRow.at,
            no_number,
            sa.literal(""),
        ).where(
            ContactAttemptRow.tenant.in_(tenants),
            ContactAttemptRow.subject_hash.in_(subjects),
            ContactAttemptRow.at > earliest_since,
        ),
    ]
    if checks:
        branches.append(
            select(
                kind("on_file"),
                ConsentRow.tenant,
                ConsentRow.subject_hash,
                sa.literal(""),
                ConsentRow.consented_at,
                no_number,
                sa.literal(""),
            ).where(
                ConsentRow.tenant.in_(tenants),
                ConsentRow.subject_hash.in_(subjects),
                ConsentRow.consented_at.in_(checks),
            )
        )
    if numbers:
        branches.append(
            select(
                kind("registry"),
                sa.literal(""),
                sa.literal(""),
                sa.literal(""),
                no_at,
                registry.number,
                sa.literal(""),
            ).where(registry.number.in_(numbers))
        )
    return sa.union_all(*branches)

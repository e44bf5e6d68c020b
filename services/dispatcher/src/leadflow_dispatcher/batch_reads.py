"""The reads of a SubmitLeads batch, made once for the whole batch and then kept in memory.

Storing one lead reads: the stored lead it duplicates (`LeadStore._find_duplicate`), the lead it
merges into (`_merge_target`), the pending or recent call it joins (`_joinable_lead`), its place
in its (person, campaign) order (`_next_order_seq`) and the kinds of work an earlier lead of that
order has not finished (`_held_kinds`). Here each is one query for every lead of the batch, made
after the batch's advisory locks are held (no one else changes these people's rows until the
commit); then, as the batch stores its leads one after the other, what each one adds (a lead,
its jobs, an alias, a merge's new person keys) is applied to the loaded rows, so every lead gets
the answer those single-lead queries would give at its turn.

Superset reads, exact answers: a query may load more than a lead needs (every tenant and key
of the batch crossed); the per-lead choice is made in Python with the same filters and order
as the single-lead query.

The statements are fixed PostgreSQL texts with the lists as array parameters
(`batch_reads_sql`, which says why); only the PostgreSQL batch path (`batch_submit`) loads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Generic, TypeVar

from sqlalchemy.orm import Session

from leadflow.v1 import lead_pb2
from leadflow_dispatcher import batch_reads_sql as sql
from leadflow_dispatcher import scheduling
from leadflow_dispatcher.attempts import IN_FLIGHT
from leadflow_dispatcher.models import JobRow, LeadRow
from leadflow_dispatcher.person_order import ORDERED_KINDS
from leadflow_dispatcher.persons import PersonKeys, campaign_of

if TYPE_CHECKING:
    from leadflow_dispatcher.batch_submit import Submission

# As `_merge_target`: the newest few leads of the person and campaign are the candidates.
MERGE_CANDIDATES = 5


@dataclass(frozen=True)
class _Alias:
    """A sender's ids that answer with `lead` (a submission merged into it)."""

    tenant: str
    source: str
    vendor_lead_id: str | None
    idempotency_key: str | None
    lead: LeadRow


Key = tuple[str, ...]
T = TypeVar("T", LeadRow, _Alias)


class _Index(Generic[T]):
    """Rows by their keys, so a lead looks only at the rows that share a key with it (not at
    every row of the batch: a batch of a thousand leads would be a million comparisons). A
    row may be added again under new keys; a lookup answers each row once, in adding order."""

    def __init__(self) -> None:
        self._by_key: dict[Key, list[tuple[int, T]]] = {}
        self._added = 0

    def add(self, row: T, keys: Iterable[Key]) -> None:
        self._added += 1
        for key in keys:
            self._by_key.setdefault(key, []).append((self._added, row))

    def find(self, keys: Iterable[Key]) -> list[T]:
        first: dict[int, tuple[int, T]] = {}
        for key in keys:
            for order, row in self._by_key.get(key, ()):
                if id(row) not in first or order < first[id(row)][0]:
                    first[id(row)] = (order, row)
        return [row for _, row in sorted(first.values(), key=lambda m: m[0])]


def _id_keys(tenant: str, source: str, vendor_lead_id: str | None, idempotency_key: str | None) -> list[Key]:
    keys: list[Key] = []
    if vendor_lead_id:
        keys.append(("vendor", tenant, source, vendor_lead_id))
    if idempotency_key:
        keys.append(("idempotency", tenant, idempotency_key))
    return keys


def _lead_id_keys(lead: lead_pb2.Lead) -> list[Key]:
    return _id_keys(
        lead.tenant, scheduling.source_name(lead.source), lead.vendor_lead_id, lead.idempotency_key
    )


def _person_keys(tenant: str, phone: str | None, email: str | None) -> list[Key]:
    return [(kind, tenant, value) for kind, value in (("phone", phone), ("email", email)) if value]


@dataclass
class BatchReads:
    # Leads naming a vendor id or idempotency key of the batch, and the batch's new leads.
    named: _Index[LeadRow] = field(default_factory=_Index)
    aliases: _Index[_Alias] = field(default_factory=_Index)
    # Leads of the batch's people (by phone or email), stored or new; the ORM objects, so a
    # merge's change of person keys is seen by the leads after it (each lookup checks the
    # row's keys as they are now; the index may hold a row under keys it had before).
    people: _Index[LeadRow] = field(default_factory=_Index)
    live_dials: set[str] = field(default_factory=set)  # lead ids with a dial job still to run
    # (lead id, attempt state, dialed at) of the people's stored leads.
    attempts: list[tuple[str, str, datetime | None]] = field(default_factory=list)
    last_seq: dict[tuple[str, str], int] = field(default_factory=dict)
    held: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, s: Session, items: Sequence[Submission], now: datetime, join_window: float) -> BatchReads:
        """`now`: taken before any lead of the batch takes its own, so every "within the window"
        of a later instant is inside what is loaded."""
        reads = cls()
        tenants = sorted({i.lead.tenant for i in items})
        reads._load_named(s, items, tenants)
        reads._load_people(s, items, tenants, now, join_window)
        reads._load_order(s, items, tenants)
        return reads

    # ---- loading -----------------------------------------------------------------------

    def _load_named(self, s: Session, items: Sequence[Submission], tenants: list[str]) -> None:
        vendor = sorted(
            {
                (scheduling.source_name(i.lead.source), i.lead.vendor_lead_id)
                for i in items
                if i.lead.vendor_lead_id
            }
        )
        idem = sorted({i.lead.idempotency_key for i in items if i.lead.idempotency_key})
        if not vendor and not idem:
            return
        by_ids = {
            "tenants": tenants,
            "sources": [source for source, _ in vendor],
            "vendor_ids": [vendor_id for _, vendor_id in vendor],
            "idempotency_keys": idem,
        }
        for row in s.scalars(sql.NAMED_LEADS, by_ids):
            self._add_named(row)
        # Aliases only answer a lead no stored lead names, and the batch only adds names.
        if all(self._best_named(i.lead) is not None for i in items):
            return
        for a_tenant, a_source, a_vendor_id, a_idem, lead in s.execute(sql.NAMED_ALIASES, by_ids):
            self._add_alias(_Alias(a_tenant, a_source, a_vendor_id, a_idem, lead))

    def _load_people(
        self, s: Session, items: Sequence[Submission], tenants: list[str], now: datetime, join_window: float
    ) -> None:
        phones = sorted({i.keys.phone for i in items if i.keys.phone})
        emails = sorted({i.keys.email for i in items if i.keys.email})
        if not phones and not emails:
            return
        people = list(s.scalars(sql.PEOPLE_LEADS, {"tenants": tenants, "phones": phones, "emails": emails}))
        if not people:
            return
        for row in people:
            self._add_person(row)
        # Row locks on every lead a merge may change, as `_merge_target`'s FOR UPDATE takes them.
        windows: dict[tuple[str, str], float] = {}
        for i in items:
            if (campaign := campaign_of(i.lead)) and i.keys.any:
                key = (i.lead.tenant, campaign)
                windows[key] = max(windows.get(key, 0.0), i.policy.merge_window_seconds)
        mergeable = sorted(
            r.id
            for r in people
            if windows.get((r.tenant, r.campaign or ""), 0.0) > 0
            and r.created_at >= now - timedelta(seconds=windows[(r.tenant, r.campaign or "")])
        )
        if mergeable:
            s.execute(sql.LOCK_MERGEABLE, {"ids": mergeable})
        by_leads = {"tenants": tenants, "lead_ids": [r.id for r in people]}
        self.live_dials = set(s.scalars(sql.LIVE_DIALS, by_leads))
        self.attempts = [
            (lead_id, state, dialed_at)
            for lead_id, state, dialed_at in s.execute(
                sql.RECENT_ATTEMPTS, {**by_leads, "since": now - timedelta(seconds=join_window)}
            )
        ]

    def _load_order(self, s: Session, items: Sequence[Submission], tenants: list[str]) -> None:
        keys = sorted({k for i in items if (k := i.keys.order_key(campaign_of(i.lead)))})
        if not keys:
            return
        for tenant, key, last in s.execute(sql.LAST_ORDER_SEQ, {"tenants": tenants, "order_keys": keys}):
            self.last_seq[(tenant, str(key))] = int(last or 0)
        # A job's order key is its lead's: an order with no lead yet has no work to wait for.
        known = sorted({key for _, key in self.last_seq})
        if not known:
            return
        for tenant, key, kind in s.execute(sql.HELD_KINDS, {"tenants": tenants, "order_keys": known}):
            self.held.setdefault((tenant, str(key)), set()).add(kind)

    # ---- answers, lead by lead ---------------------------------------------------------

    def duplicate_of(self, lead: lead_pb2.Lead) -> LeadRow | None:
        """As `LeadStore._find_duplicate`: a lead carrying its ids (the vendor's id first, then
        the oldest), else the lead a merged submission with these ids went into."""
        best = self._best_named(lead)
        if best is not None:
            return best
        aliases = self.aliases.find(_lead_id_keys(lead))
        return next((a.lead for a in aliases if _names(a, lead)[1]), None)

    def _best_named(self, lead: lead_pb2.Lead) -> LeadRow | None:
        rows = self.named.find(_lead_id_keys(lead))
        named = [(row, vendor) for row in rows for vendor, any_ in [_names(row, lead)] if any_]
        named.sort(key=lambda m: (0 if m[1] else 1, m[0].created_at, m[0].id))
        return named[0][0] if named else None

    def merge_target(
        self, lead: lead_pb2.Lead, keys: PersonKeys, now: datetime, window: float
    ) -> LeadRow | None:
        """As `_merge_target`: the newest lead of this person and campaign within the window
        (among the newest few, the first that is a test lead exactly when this one is)."""
        campaign = campaign_of(lead)
        if not campaign or window <= 0 or not keys.any:
            return None
        since = now - timedelta(seconds=window)
        rows = [
            r
            for r in self._person_leads(lead.tenant, keys)
            if r.campaign == campaign and r.created_at >= since
        ]
        rows.sort(key=lambda r: r.created_at, reverse=True)
        return next(
            (
                r
                for r in rows[:MERGE_CANDIDATES]
                if lead_pb2.Lead.FromString(r.lead_pb).is_test == lead.is_test
            ),
            None,
        )

    def joinable_lead(self, tenant: str, keys: PersonKeys, now: datetime, window: float) -> LeadRow | None:
        """As `_joinable_lead`: a lead of this person (not itself joined to another) with a dial
        still to come, else one with a call in flight or placed within the window."""
        if not keys.any:
            return None
        leads = [r for r in self._person_leads(tenant, keys) if r.joined_lead_id is None]
        pending = next((r for r in leads if r.id in self.live_dials), None)
        if pending is not None:
            return pending
        since = now - timedelta(seconds=window)
        recent = {
            lead_id
            for lead_id, state, dialed_at in self.attempts
            if state in IN_FLIGHT or (dialed_at is not None and dialed_at >= since)
        }
        return next((r for r in leads if r.id in recent), None)

    def next_order_seq(self, tenant: str, order_key: str) -> int:
        return self.last_seq.get((tenant, order_key), 0) + 1

    def held_kinds(self, tenant: str, order_key: str) -> set[str]:
        return set(self.held.get((tenant, order_key), ()))

    def _person_leads(self, tenant: str, keys: PersonKeys) -> list[LeadRow]:
        return [
            r
            for r in self.people.find(_person_keys(tenant, keys.phone, keys.email))
            if r.tenant == tenant
            and (
                (keys.phone and r.person_phone == keys.phone) or (keys.email and r.person_email == keys.email)
            )
        ]

    # ---- what the batch adds -----------------------------------------------------------

    def stored(self, row: LeadRow, jobs: Sequence[JobRow]) -> None:
        """A new lead with its jobs (all still to run)."""
        self._add_named(row)
        self._add_person(row)
        if row.order_key:
            key = (row.tenant, row.order_key)
            self.last_seq[key] = max(self.last_seq.get(key, 0), row.order_seq or 0)
            self.held.setdefault(key, set()).update(j.kind for j in jobs if j.kind in ORDERED_KINDS)
        if any(j.kind == "dial" for j in jobs):
            self.live_dials.add(row.id)

    def merged(self, lead: lead_pb2.Lead, target: LeadRow) -> None:
        """`lead` went into `target`: its ids answer with it from now on (the alias
        `_merge_into` wrote); a merge's new person keys are already on `target`."""
        if lead.vendor_lead_id or lead.idempotency_key:
            self._add_alias(
                _Alias(
                    target.tenant,
                    scheduling.source_name(lead.source),
                    lead.vendor_lead_id or None,
                    lead.idempotency_key or None,
                    target,
                )
            )
        self._add_person(target)  # under the merged keys too

    def _add_named(self, row: LeadRow) -> None:
        self.named.add(row, _id_keys(row.tenant, row.source, row.vendor_lead_id, row.idempotency_key))

    def _add_alias(self, alias: _Alias) -> None:
        self.aliases.add(
            alias, _id_keys(alias.tenant, alias.source, alias.vendor_lead_id, alias.idempotency_key)
        )

    def _add_person(self, row: LeadRow) -> None:
        self.people.add(row, _person_keys(row.tenant, row.person_phone, row.person_email))


def _names(row: LeadRow | _Alias, lead: lead_pb2.Lead) -> tuple[bool, bool]:
    """(whether the row carries the lead's vendor id, whether it carries either of its ids)."""
    if row.tenant != lead.tenant:
        return False, False
    vendor = bool(lead.vendor_lead_id) and (row.source, row.vendor_lead_id) == (
        scheduling.source_name(lead.source),
        lead.vendor_lead_id,
    )
    idem = bool(lead.idempotency_key) and row.idempotency_key == lead.idempotency_key
    return vendor, vendor or idem

"""SubmitLeads: store a whole batch of leads in ONE transaction (one commit, one WAL flush).

- The advisory locks of every person in the batch are taken first, in one statement and in
  key order, so two batches about the same people queue instead of deadlocking.
- Each lead runs the single-lead code (duplicate lookup, insert with decision, timeline and
  outbox jobs); a duplicate within the batch finds the lead stored a moment earlier in the
  same transaction, so it collapses to that lead. When a lead fails, the batch is redone with
  a SAVEPOINT per lead: the failing lead is rolled back alone and answered with its own error.
- In the first pass the leads' rows stay pending and go out together at the end, as one
  multi-row INSERT per table (leads, events, jobs). A lead whose person or duplicate keys an
  earlier lead of the batch shares flushes what is pending first, so its reads (duplicate,
  merge, join, person order) see that lead exactly as one by one; other leads' reads cannot
  concern rows of a different person and key.
- The batch commits before anyone is answered; when the commit fails, the call fails and none
  of the batch is stored (the gateway answers each sender 503).
- On SQLite (local development) every lead keeps its own transaction, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadflow.v1 import decision_pb2, lead_pb2
from leadflow_core.clock import now as utcnow
from leadflow_dispatcher import scheduling
from leadflow_dispatcher.leads import LeadStore
from leadflow_dispatcher.models import LeadAliasRow, LeadRow
from leadflow_dispatcher.person_order import SubmitResult
from leadflow_dispatcher.persons import PersonKeys
from leadflow_dispatcher.policies import PolicyView
from leadflow_dispatcher.repository import event_row


@dataclass(frozen=True)
class Submission:
    lead: lead_pb2.Lead
    decision: decision_pb2.Decision
    keys: PersonKeys
    policy: PolicyView
    # The sender's request id, kept on the lead's timeline.
    request_id: str = ""


@dataclass(frozen=True)
class Limits:
    """The deployment's settings every submission uses."""

    deployment_delays: dict[str, int]
    request_id: str
    join_window_seconds: float
    horizon_seconds: float
    lease_seconds: float


class ItemFailed(Exception):
    """One lead of the batch could not be stored; the others are unaffected."""


class _NeedsIsolation(Exception):
    """A lead failed in the fast pass: redo the batch with a savepoint per lead."""


_ITEM_ERRORS = (IntegrityError, ValueError, TypeError, KeyError)


def submit_many(store: LeadStore, items: list[Submission], limits: Limits) -> list[SubmitResult | ItemFailed]:
    """Fast pass first: the whole batch in one transaction without savepoints (two statements
    fewer per lead). When any lead fails in it, nothing of that pass is kept and the batch runs
    again with a savepoint per lead, so that only the failing lead fails."""
    if not store.postgres:
        return [_alone(store, item, limits) for item in items]
    try:
        return _store_batch(store, items, limits, isolate=False)
    except _NeedsIsolation:
        return _store_batch(store, items, limits, isolate=True)


def _store_batch(
    store: LeadStore, items: list[Submission], limits: Limits, isolate: bool
) -> list[SubmitResult | ItemFailed]:
    results: list[SubmitResult | ItemFailed] = []
    with store.sessions.begin() as s:
        lock_ids = sorted({k for item in items if item.keys.any for k in item.keys.lock_ids()})
        if lock_ids:
            s.execute(
                sa.text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:ks AS bigint[])) AS k"),
                {"ks": lock_ids},
            )
        if not isolate:
            seen: set[tuple[str, ...]] = set()
            try:
                with s.no_autoflush:
                    stored = _stored_duplicates(s, items)
                    for i, item in enumerate(items):
                        keys = _related_keys(item)
                        known = not keys & seen
                        if not known:
                            # An earlier lead of this batch may be this one's duplicate: look
                            # again, with that lead's rows written.
                            s.flush()
                        seen |= keys
                        results.append(
                            _store_one(store, s, item, limits, flush=False, known=known, duplicate=stored[i])
                        )
                    s.flush()
            except _ITEM_ERRORS as err:
                raise _NeedsIsolation from err
            return results
        for item in items:
            try:
                with s.begin_nested():
                    result = _store_one(store, s, item, limits)
                results.append(result)
            except IntegrityError:
                # A concurrent batch stored the same lead first (its commit ended our wait on
                # the unique index): answer as a duplicate of it.
                source = scheduling.source_name(item.lead.source)
                existing = store._find_duplicate(s, item.lead, source)
                results.append(
                    store._duplicate_result(existing)
                    if existing is not None
                    else ItemFailed("the lead conflicts with a stored one")
                )
            except (ValueError, TypeError, KeyError) as err:  # this lead's own data
                results.append(ItemFailed(f"the lead could not be stored: {type(err).__name__}"))
    return results


def _related_keys(item: Submission) -> set[tuple[str, ...]]:
    """What links a lead to another of its batch: its person's keys and its duplicate keys."""
    lead = item.lead
    keys: set[tuple[str, ...]] = set()
    for name, value in (("phone", item.keys.phone), ("email", item.keys.email)):
        if value:
            keys.add((lead.tenant, name, value))
    if lead.vendor_lead_id:
        keys.add((lead.tenant, "vendor", scheduling.source_name(lead.source), lead.vendor_lead_id))
    if lead.idempotency_key:
        keys.add((lead.tenant, "idempotency", lead.idempotency_key))
    return keys


def _stored_duplicates(s: Session, items: list[Submission]) -> list[LeadRow | None]:
    """For each lead, the stored lead it duplicates (what `LeadStore._find_duplicate` answers),
    read for the whole batch in one query (a second only for leads merged away, via aliases)."""
    tenants = sorted({item.lead.tenant for item in items})
    vendor = sorted(
        {
            (scheduling.source_name(i.lead.source), i.lead.vendor_lead_id)
            for i in items
            if i.lead.vendor_lead_id
        }
    )
    idem = sorted({i.lead.idempotency_key for i in items if i.lead.idempotency_key})
    if not vendor and not idem:
        return [None] * len(items)

    def by_keys(model: type[LeadRow] | type[LeadAliasRow]) -> sa.ColumnElement[bool]:
        clauses: list[sa.ColumnElement[bool]] = []
        if vendor:
            clauses.append(sa.tuple_(model.source, model.vendor_lead_id).in_(vendor))
        if idem:
            clauses.append(model.idempotency_key.in_(idem))
        return sa.and_(model.tenant.in_(tenants), sa.or_(*clauses))

    rows = list(s.scalars(sa.select(LeadRow).where(by_keys(LeadRow))))
    out: list[LeadRow | None] = []
    missing: list[int] = []
    for i, item in enumerate(items):
        named: list[tuple[LeadRow, bool]] = []
        for row in rows:
            vendor_named, any_named = _names(row, item)
            if any_named:
                named.append((row, vendor_named))
        # The same choice as `_find_duplicate`: the vendor's own id first, then the oldest.
        named.sort(key=lambda m: (0 if m[1] else 1, m[0].created_at, m[0].id))
        out.append(named[0][0] if named else None)
        if not named:
            missing.append(i)
    if missing:
        aliases = list(s.scalars(sa.select(LeadAliasRow).where(by_keys(LeadAliasRow))))
        for i in missing:
            alias = next((a for a in aliases if _names(a, items[i])[1]), None)
            if alias is not None:
                out[i] = s.get(LeadRow, alias.lead_id)
    return out


def _names(row: LeadRow | LeadAliasRow, item: Submission) -> tuple[bool, bool]:
    """(whether the row carries the lead's vendor id, whether it carries either of its ids)."""
    lead = item.lead
    if row.tenant != lead.tenant:
        return False, False
    vendor = bool(lead.vendor_lead_id) and (row.source, row.vendor_lead_id) == (
        scheduling.source_name(lead.source),
        lead.vendor_lead_id,
    )
    idem = bool(lead.idempotency_key) and row.idempotency_key == lead.idempotency_key
    return vendor, vendor or idem


def _store_one(
    store: LeadStore,
    s: Session,
    item: Submission,
    limits: Limits,
    flush: bool = True,
    known: bool = False,
    duplicate: LeadRow | None = None,
) -> SubmitResult:
    """The single-lead path of `LeadStore.submit`, inside the batch's transaction (whose
    advisory locks on every person of the batch are already held); `flush=False` leaves its
    rows pending for the batch's multi-row INSERTs; `known`: `duplicate` is what the duplicate
    lookup would answer, read already for the batch."""
    source = scheduling.source_name(item.lead.source)
    existing = duplicate if known else store._find_duplicate(s, item.lead, source)
    if existing is not None:
        # Counted by the admin lead statistics; the timeline shows redeliveries.
        s.add(
            event_row(
                existing.tenant,
                existing.id,
                "duplicate_received",
                {},
                item.request_id or limits.request_id,
                utcnow(),
            )
        )
        return store._duplicate_result(existing)
    target = store._merge_target(s, item.lead, item.keys, utcnow(), item.policy.merge_window_seconds)
    if target is not None:
        result = store._merge_into(
            s, target, item.lead, item.keys, source, item.request_id or limits.request_id, utcnow()
        )
    else:
        result = store._insert_lead(
            s,
            item.lead,
            item.decision,
            item.keys,
            item.policy,
            limits.deployment_delays,
            item.request_id or limits.request_id,
            limits.join_window_seconds,
            limits.horizon_seconds,
            limits.lease_seconds,
            flush=flush,
        )
    if flush:
        s.flush()
    return result


def _alone(store: LeadStore, item: Submission, limits: Limits) -> SubmitResult | ItemFailed:
    try:
        return store.submit(
            item.lead,
            item.decision,
            item.keys,
            item.policy,
            limits.deployment_delays,
            item.request_id or limits.request_id,
            limits.join_window_seconds,
            limits.horizon_seconds,
            limits.lease_seconds,
        )
    except (ValueError, TypeError, KeyError) as err:
        return ItemFailed(f"the lead could not be stored: {type(err).__name__}")

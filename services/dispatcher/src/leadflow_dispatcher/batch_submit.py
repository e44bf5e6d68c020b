"""SubmitLeads: store a whole batch of leads in ONE transaction (one commit, one WAL flush).

- The advisory locks of every person in the batch are taken first, in one statement and in
  key order, so two batches about the same people queue instead of deadlocking.
- Each lead runs the single-lead code (duplicate lookup, merge or insert with decision,
  timeline and outbox jobs). When a lead fails, the batch is redone with a SAVEPOINT per lead:
  the failing lead is rolled back alone and answered with its own error (that pass reads with
  a query per lead, as one by one).
- In the first pass the reads (duplicates, merges, joins, person order, held work) are made
  once for the whole batch (`batch_reads`) and kept up to date as its leads are stored, so a
  duplicate within the batch collapses to the lead stored a moment earlier, and each lead's
  answer is the one-by-one answer. The leads' rows stay pending and go out together at the
  end, as one multi-row INSERT per table (leads, events, jobs).
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
from leadflow_dispatcher.batch_reads import BatchReads
from leadflow_dispatcher.leads import LeadStore
from leadflow_dispatcher.pending_inserts import flush_pending_as_inserts
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
    fewer per lead), its reads made once for the batch. When any lead fails in it, nothing of
    that pass is kept and the batch runs again with a savepoint per lead, so that only the
    failing lead fails."""
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
            try:
                with s.no_autoflush:
                    reads = BatchReads.load(s, items, utcnow(), limits.join_window_seconds)
                    results.extend(_store_one(store, s, item, limits, reads) for item in items)
                    flush_pending_as_inserts(s)
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


def _store_one(
    store: LeadStore,
    s: Session,
    item: Submission,
    limits: Limits,
    reads: BatchReads | None = None,
) -> SubmitResult:
    """The single-lead path of `LeadStore.submit`, inside the batch's transaction (whose
    advisory locks on every person of the batch are already held). With the batch's `reads`
    its rows stay pending for the batch's multi-row INSERTs; without, it reads with a query
    each and flushes its rows."""
    source = scheduling.source_name(item.lead.source)
    if reads is not None:
        existing = reads.duplicate_of(item.lead)
    else:
        existing = store._find_duplicate(s, item.lead, source)
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
    now, window = utcnow(), item.policy.merge_window_seconds
    if reads is not None:
        target = reads.merge_target(item.lead, item.keys, now, window)
    else:
        target = store._merge_target(s, item.lead, item.keys, now, window)
    if target is not None:
        result = store._merge_into(
            s, target, item.lead, item.keys, source, item.request_id or limits.request_id, utcnow()
        )
        if reads is not None:
            reads.merged(item.lead, target)
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
            flush=reads is None,
            reads=reads,
        )
    if reads is None:
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

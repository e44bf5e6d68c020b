"""EvaluateBatch: decide for every lead of a batch, then write all their audit records (and the
consent they carry) in one transaction, and only then answer. (A batch holding two leads of one
person writes before deciding the second, which must see the consent the first recorded.)

What storage knows about the batch's people (consent, revocations, DNC, registry, emergency
stops, attempts) is read for all of them at once, one set-based statement per batch instead of
two round trips per lead; a person's second lead in the batch is read on its own after the
first one's records are written, as one by one.

Each lead runs through the single-lead code against an `ItemContext`, so a lead that cannot be
evaluated (bad phone, unknown tenant) fails alone. When the audit transaction fails the call
fails: no decision goes out that is not on record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc

from leadflow.v1 import batch_pb2, compliance_pb2, tenant_pb2
from leadflow_compliance.repository import SubjectQuery
from leadflow_core.grpc_batch import item_request_ids, run_item
from leadflow_core.request_context import bound, current_request_id

if TYPE_CHECKING:
    from leadflow_compliance.compliance_service import ComplianceServicer


@dataclass(frozen=True)
class Evaluation:
    """One evaluation request, checked: its tenant, purpose, instant and what it must read."""

    request: compliance_pb2.EvaluateRequest
    tenant: tenant_pb2.Tenant
    purpose: str
    now: datetime
    query: SubjectQuery


def evaluate_batch(
    servicer: ComplianceServicer,
    requests: Sequence[compliance_pb2.EvaluateRequest],
    context: grpc.ServicerContext,
) -> list[compliance_pb2.EvaluateResponse | batch_pb2.ItemError]:
    audits: list[dict[str, Any]] = []
    results: list[compliance_pb2.EvaluateResponse | batch_pb2.ItemError] = []
    # Each lead is logged under its own sender's request id.
    rids = item_request_ids(current_request_id(), len(requests))
    prepared: list[Evaluation | batch_pb2.ItemError] = []
    for req, rid in zip(requests, rids, strict=True):
        with bound(rid):
            prepared.append(run_item(context, partial(servicer.prepare_evaluation, req)))
    # The first lead of each person reads with the batch; a later one reads after the audit flush.
    first: dict[tuple[str, str], int] = {}
    for i, ev in enumerate(prepared):
        if isinstance(ev, Evaluation):
            first.setdefault((ev.query.tenant, ev.query.subject), i)
    queries = [ev.query for i in first.values() if isinstance(ev := prepared[i], Evaluation)]
    states = dict(zip(first.values(), servicer.repo.subject_states(queries), strict=True))
    seen: set[tuple[str, str]] = set()
    for i, (req, rid, ev) in enumerate(zip(requests, rids, prepared, strict=True)):
        if not isinstance(ev, Evaluation):
            results.append(ev)
            continue
        person = (ev.query.tenant, ev.query.subject)
        if person in seen and audits:
            # A person already seen in this batch: store what the earlier leads recorded
            # (their consent) first, so this lead is decided as it would be one by one.
            servicer.repo.audit_many(audits)
            audits.clear()
        seen.add(person)
        with bound(rid):
            evaluate = partial(servicer.evaluate_one, req, audits=audits, prepared=ev, state=states.get(i))
            results.append(run_item(context, evaluate))
    if audits:
        servicer.repo.audit_many(audits)
    return results

"""EvaluateBatch: decide for every lead of a batch, then write all their audit records (and the
consent they carry) in one transaction, and only then answer. (A batch holding two leads of one
person writes before deciding the second, which must see the consent the first recorded.)

Each lead runs through the single-lead code against an `ItemContext`, so a lead that cannot be
evaluated (bad phone, unknown tenant) fails alone. When the audit transaction fails the call
fails: no decision goes out that is not on record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc

from leadflow.v1 import batch_pb2, compliance_pb2
from leadflow_core.grpc_batch import item_request_ids, run_item
from leadflow_core.request_context import bound, current_request_id

if TYPE_CHECKING:
    from leadflow_compliance.compliance_service import ComplianceServicer


def evaluate_batch(
    servicer: ComplianceServicer,
    requests: Sequence[compliance_pb2.EvaluateRequest],
    context: grpc.ServicerContext,
) -> list[compliance_pb2.EvaluateResponse | batch_pb2.ItemError]:
    audits: list[dict[str, Any]] = []
    results: list[compliance_pb2.EvaluateResponse | batch_pb2.ItemError] = []
    seen: set[tuple[str, str]] = set()
    # Each lead is logged under its own sender's request id.
    for req, rid in zip(requests, item_request_ids(current_request_id(), len(requests)), strict=True):
        person = (req.lead.tenant, req.lead.contact.phone.e164)
        if person in seen and audits:
            # A person already seen in this batch: store what the earlier leads recorded
            # (their consent) first, so this lead is decided as it would be one by one.
            servicer.repo.audit_many(audits)
            audits.clear()
        seen.add(person)
        with bound(rid):
            results.append(run_item(context, lambda ctx, req=req: servicer.evaluate_one(req, ctx, audits)))  # type: ignore[misc]
    if audits:
        servicer.repo.audit_many(audits)
    return results

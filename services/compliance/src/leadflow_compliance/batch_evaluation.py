"""EvaluateBatch: decide for every lead of a batch, then write all their audit records (and the
consent they carry) in one transaction, and only then answer.

Each lead runs through the single-lead code against an `ItemContext`, so a lead that cannot be
evaluated (bad phone, unknown tenant) fails alone. When the audit transaction fails the call
fails: no decision goes out that is not on record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc

from leadflow.v1 import batch_pb2, compliance_pb2
from leadflow_core.grpc_batch import run_item

if TYPE_CHECKING:
    from leadflow_compliance.compliance_service import ComplianceServicer


def evaluate_batch(
    servicer: ComplianceServicer,
    requests: Sequence[compliance_pb2.EvaluateRequest],
    context: grpc.ServicerContext,
) -> list[compliance_pb2.EvaluateResponse | batch_pb2.ItemError]:
    audits: list[dict[str, Any]] = []
    results: list[compliance_pb2.EvaluateResponse | batch_pb2.ItemError] = [
        run_item(context, lambda ctx, req=req: servicer.evaluate_one(req, ctx, audits))  # type: ignore[misc]
        for req in requests
    ]
    if audits:
        servicer.repo.audit_many(audits)
    return results

"""A separate process that reserves calls over gRPC, for the concurrency test.

Usage: reserve_worker.py ADDR[,ADDR...] TENANT WORKER_ID COUNT COST EVALUATE_AT_EPOCH
Prints one JSON line: the reservation ids it obtained.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from leadflow.v1 import compliance_pb2, compliance_pb2_grpc, decision_pb2, lead_pb2
from leadflow_core.grpc_clients import channel
from leadflow_core.timestamps import to_proto


def main() -> None:
    addrs, tenant, worker, count, cost, at = sys.argv[1:7]
    when = to_proto(datetime.fromtimestamp(int(at), UTC))
    stubs = [compliance_pb2_grpc.ComplianceServiceStub(channel(a, 30.0)) for a in addrs.split(",")]
    got: list[str] = []
    for i in range(int(count)):
        lead = lead_pb2.Lead(
            tenant=tenant,
            contact=lead_pb2.Contact(phone=lead_pb2.Phone(e164=f"+1212555{int(worker) * 100 + i:04d}")),
            consent=lead_pb2.ConsentEvidence(
                granted=True,
                consented_at=to_proto(datetime(2026, 1, 1, tzinfo=UTC)),
                disclosure_text="I agree to be called",
                seller=tenant,
                form_submission_id=f"sub-{worker}-{i}",
            ),
        )
        reply = stubs[i % len(stubs)].ReserveCall(
            compliance_pb2.ReserveCallRequest(
                lead=lead, attempt_id=f"w{worker}-{i}", estimated_cost_usd=cost, evaluate_at=when
            )
        )
        if reply.decision.action == decision_pb2.DIAL_ACTION_DIAL_NOW:
            got.append(reply.reservation_id)
    print(json.dumps(got))


if __name__ == "__main__":
    main()

"""DispatcherService's request-log RPCs for the gateway: RecordRequests and ClaimReplay.

A mixin of `DispatcherServicer` (it uses the servicer's `store`)."""

from __future__ import annotations

import grpc

from leadflow.v1 import dispatcher_pb2, inbound_pb2
from leadflow_core import grpc_errors
from leadflow_dispatcher.store import NotFound, Store

MAX_RECORDS = 1000


class RequestLogServicer:
    store: Store

    def RecordRequests(
        self, request: dispatcher_pb2.RecordRequestsRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.RecordRequestsResponse:
        if len(request.requests) > MAX_RECORDS:
            grpc_errors.invalid_argument(context, "requests", f"at most {MAX_RECORDS} per call")
        if any(not r.tenant for r in request.requests):
            grpc_errors.invalid_argument(context, "requests.tenant", "is required")
        return dispatcher_pb2.RecordRequestsResponse(recorded=self.store.record_requests(request.requests))

    def ClaimReplay(
        self, request: dispatcher_pb2.ClaimReplayRequest, context: grpc.ServicerContext
    ) -> inbound_pb2.InboundRequest:
        if not request.grant:
            grpc_errors.invalid_argument(context, "grant", "is required")
        try:
            return self.store.claim_replay(request.grant)
        except NotFound:
            grpc_errors.not_found(context, "replay grant", "(unknown, spent or lapsed)")

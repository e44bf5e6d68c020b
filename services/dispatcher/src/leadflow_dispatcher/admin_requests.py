"""AdminService's inbound request log: ListRequests and ReplayRequests.

A mixin of `AdminServicer`. A replay is an operator's authenticated action: the dispatcher issues
a single-use grant per logged request and hands it to the gateway (`POST /v1/replays`), which
redeems it over mutual TLS (`DispatcherService.ClaimReplay`) and runs the stored request through
its normal route without the sender check — the original was verified at intake, and a rotated
secret could not verify it again. Idempotency applies as for any redelivery.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable

import grpc

from leadflow.v1 import admin_pb2
from leadflow_core import grpc_errors
from leadflow_core.timestamps import from_proto
from leadflow_dispatcher.request_log import NotReplayable, RequestFilter
from leadflow_dispatcher.settings import DispatcherSettings
from leadflow_dispatcher.store import NotFound, Store

REPLAY_GRANT_HEADER = "X-Leadflow-Replay-Grant"


def request_filter(f: admin_pb2.ListRequestsRequest, tenant: str) -> RequestFilter:
    return RequestFilter(
        tenant=tenant,
        source=f.source,
        status=f.status,
        since=from_proto(f.since) if f.HasField("since") else None,
        until=from_proto(f.until) if f.HasField("until") else None,
        limit=f.limit,
        with_body=not f.without_body,
        request_log_id=f.request_log_id,
    )


class RequestLogAdmin:
    store: Store
    settings: DispatcherSettings

    # AdminServicer's: writes the admin audit log, returns the actor.
    _audit: Callable[..., str]

    def ListRequests(
        self, request: admin_pb2.ListRequestsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListRequestsResponse:
        if not request.tenant:
            grpc_errors.invalid_argument(context, "tenant", "is required")
        return admin_pb2.ListRequestsResponse(
            requests=self.store.list_requests(request_filter(request, request.tenant))
        )

    def ReplayRequests(
        self, request: admin_pb2.ReplayRequestsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ReplayRequestsResponse:
        reason = str(request.reason).strip()
        if not reason:
            grpc_errors.invalid_argument(
                context, "reason", "is required: every admin action is audited with why"
            )
        if not request.tenant:
            grpc_errors.invalid_argument(context, "tenant", "is required")
        if not request.request_log_id and not request.HasField("filter"):
            grpc_errors.invalid_argument(context, "request_log_id", "give one id, or a filter for a range")
        try:
            grants = self.store.grant_replays(
                request_filter(request.filter, request.tenant),
                request.request_log_id,
                self.settings.replay_grant_seconds,
            )
        except NotFound:
            grpc_errors.not_found(context, "request", request.request_log_id)
        self._audit(
            context,
            "requests.replay",
            request.request_log_id or "filter",
            request.tenant,
            reason,
            {"requests": [rid for rid, _ in grants]},
        )
        outcomes = []
        for rid, grant in grants:
            if isinstance(grant, NotReplayable):
                outcomes.append(admin_pb2.ReplayOutcome(request_log_id=rid, error=str(grant)))
            else:
                outcomes.append(self._replay(rid, grant))
        return admin_pb2.ReplayRequestsResponse(outcomes=outcomes)

    def _replay(self, request_log_id: str, grant: str) -> admin_pb2.ReplayOutcome:
        # LEADFLOW_GATEWAY_ADDR: host:port, or an http(s) URL (the chart gives the Service's).
        addr = self.settings.gateway_addr
        url = (addr if addr.startswith(("http://", "https://")) else f"http://{addr}").rstrip(
            "/"
        ) + "/v1/replays"
        ask = urllib.request.Request(url, data=b"", method="POST", headers={REPLAY_GRANT_HEADER: grant})  # noqa: S310
        try:
            with urllib.request.urlopen(ask, timeout=30) as resp:  # noqa: S310
                answer = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            return admin_pb2.ReplayOutcome(
                request_log_id=request_log_id, error=f"gateway answered {err.code}: {err.read()[:300]!r}"
            )
        except (OSError, ValueError) as err:
            return admin_pb2.ReplayOutcome(request_log_id=request_log_id, error=f"gateway unreachable: {err}")
        return admin_pb2.ReplayOutcome(
            request_log_id=request_log_id,
            status=int(answer.get("status", 0)),
            lead_ids=[str(x) for x in answer.get("lead_ids", [])],
        )

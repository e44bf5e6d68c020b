"""The workers' batch RPCs of DispatcherService: GetLeads and RecordEvents.

A mixin of `DispatcherServicer` (it uses the servicer's `store` and `settings`). Each item
answers for itself with an `ItemError` (NOT_FOUND, INVALID_ARGUMENT) instead of failing the
batch; a failure of the whole batch (the database) is the RPC's own status.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from leadflow.v1 import dispatcher_pb2
from leadflow_core import grpc_errors
from leadflow_core.request_context import current_request_id
from leadflow_core.timestamps import from_proto
from leadflow_dispatcher.repository import NotFound
from leadflow_dispatcher.settings import DispatcherSettings
from leadflow_dispatcher.store import Store
from leadflow_dispatcher.worker_reads import Report

MAX_BATCH = 1000


def _not_found(what: str, key: str) -> dispatcher_pb2.ItemError:
    return dispatcher_pb2.ItemError(
        code=grpc.StatusCode.NOT_FOUND.value[0], message=f"{what} {key} not found"
    )


def _invalid(field: str, why: str) -> dispatcher_pb2.ItemError:
    return dispatcher_pb2.ItemError(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=f"{field}: {why}")


def _detail(raw: str) -> dict[str, Any] | None:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class WorkerBatchServicer:
    store: Store
    settings: DispatcherSettings

    def GetLeads(
        self, request: dispatcher_pb2.GetLeadsRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.GetLeadsResponse:
        if len(request.leads) > MAX_BATCH:
            grpc_errors.invalid_argument(context, "leads", f"at most {MAX_BATCH} per call")
        refs = [(r.tenant, r.lead_id) for r in request.leads]
        items = []
        for ref, found in zip(refs, self.store.get_leads(refs), strict=True):
            if isinstance(found, NotFound):
                items.append(dispatcher_pb2.GetLeadsResponse.Item(error=_not_found("lead", ref[1])))
            else:
                items.append(dispatcher_pb2.GetLeadsResponse.Item(lead=found))
        return dispatcher_pb2.GetLeadsResponse(items=items)

    def RecordEvents(
        self, request: dispatcher_pb2.RecordEventsRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.RecordEventsResponse:
        if len(request.events) > MAX_BATCH:
            grpc_errors.invalid_argument(context, "events", f"at most {MAX_BATCH} per call")
        errors: dict[int, dispatcher_pb2.ItemError] = {}
        reports: list[Report] = []
        positions: list[int] = []
        for i, e in enumerate(request.events):
            detail = _detail(e.detail_json)
            if not (e.tenant and e.lead_id and e.kind):
                errors[i] = _invalid("tenant, lead_id, kind", "are required")
            elif detail is None:
                errors[i] = _invalid("detail_json", "must be a JSON object")
            else:
                positions.append(i)
                reports.append(
                    Report(
                        tenant=e.tenant,
                        lead_id=e.lead_id,
                        kind=e.kind,
                        detail=detail,
                        dedupe_key=e.dedupe_key,
                        request_id=e.request_id or current_request_id(),
                        next_attempt_at=from_proto(e.next_attempt_at),
                    )
                )
        results = self.store.record_events(reports, self.settings.job_lease_seconds) if reports else []
        for i, result in zip(positions, results, strict=True):
            if isinstance(result, NotFound):
                errors[i] = _not_found("lead", request.events[i].lead_id)
        recorded = dict(zip(positions, results, strict=True))
        return dispatcher_pb2.RecordEventsResponse(
            items=[
                dispatcher_pb2.RecordEventsResponse.Item(error=errors[i])
                if i in errors
                else dispatcher_pb2.RecordEventsResponse.Item(recorded=recorded[i] is True)
                for i in range(len(request.events))
            ]
        )

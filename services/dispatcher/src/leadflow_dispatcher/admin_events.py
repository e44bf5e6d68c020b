"""AdminService's events out: ListEventDeliveries (the delivery log). A mixin of AdminServicer."""

from __future__ import annotations

import json

import grpc

from leadflow.v1 import admin_pb2
from leadflow_core import grpc_errors
from leadflow_core.timestamps import as_utc, to_proto
from leadflow_dispatcher.models import EventDeliveryRow
from leadflow_dispatcher.store import Store


def delivery_proto(row: EventDeliveryRow) -> admin_pb2.EventDelivery:
    out = admin_pb2.EventDelivery(
        id=row.id,
        endpoint=row.endpoint,
        event_type=row.event_type,
        lead_id=row.lead_id,
        state=row.state,
        attempts=row.attempts,
        last_status=row.last_status,
        last_error=row.last_error,
        payload_json=json.dumps(row.payload, separators=(",", ":")),
    )
    out.created_at.CopyFrom(to_proto(as_utc(row.created_at)))
    if row.state == "pending":
        out.next_at.CopyFrom(to_proto(as_utc(row.next_at)))
    if row.delivered_at is not None:
        out.delivered_at.CopyFrom(to_proto(as_utc(row.delivered_at)))
    return out


class EventDeliveryAdmin:
    store: Store

    def ListEventDeliveries(
        self, request: admin_pb2.ListEventDeliveriesRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListEventDeliveriesResponse:
        if not request.tenant:
            grpc_errors.invalid_argument(context, "tenant", "is required")
        rows = self.store.list_event_deliveries(
            request.tenant,
            request.state,
            request.endpoint,
            request.event_type,
            min(request.limit or 50, 1000),
        )
        return admin_pb2.ListEventDeliveriesResponse(deliveries=[delivery_proto(r) for r in rows])

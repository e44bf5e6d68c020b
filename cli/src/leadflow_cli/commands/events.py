"""`leadflow events deliveries`: the delivery log of a tenant's events out (AdminService)."""

from __future__ import annotations

import argparse

from leadflow.v1 import admin_pb2
from leadflow_cli.connections import admin
from leadflow_cli.tables import print_json, table
from leadflow_core.settings import CommonSettings


def list_deliveries(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).ListEventDeliveries(
        admin_pb2.ListEventDeliveriesRequest(
            tenant=args.tenant,
            state=args.state,
            endpoint=args.endpoint,
            event_type=args.event_type,
            limit=args.limit,
        )
    )
    if args.json:
        print_json(reply)
    elif not reply.deliveries:
        print("no deliveries")
    else:
        print(
            table(
                [
                    (
                        d.id,
                        d.created_at.ToDatetime().isoformat(timespec="seconds") + "Z",
                        d.endpoint,
                        d.event_type,
                        d.lead_id,
                        d.state,
                        d.attempts,
                        d.last_status or "",
                        d.last_error,
                    )
                    for d in reply.deliveries
                ],
                (
                    "ID",
                    "CREATED",
                    "ENDPOINT",
                    "TYPE",
                    "LEAD",
                    "STATE",
                    "ATTEMPTS",
                    "LAST STATUS",
                    "LAST ERROR",
                ),
            )
        )
    return 0

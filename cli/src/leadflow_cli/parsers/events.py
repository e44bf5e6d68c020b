"""Arguments of `leadflow events`: the delivery log of a tenant's events out."""

from __future__ import annotations

import argparse
from typing import Any

from leadflow_cli.lazy import handler

EVENTS = "leadflow_cli.commands.events"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    events = sub.add_parser("events", help="events sent to tenants' endpoints: their delivery log")
    esub = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    ed = esub.add_parser("deliveries", help="a tenant's event deliveries, newest first")
    ed.add_argument("tenant")
    ed.add_argument("--state", default="", choices=("", "pending", "delivered", "failed"))
    ed.add_argument("--endpoint", default="", help="one endpoint (its name in eventEndpoints)")
    ed.add_argument("--type", dest="event_type", default="", help="lead.stored, call.completed, ...")
    ed.add_argument("--limit", type=int, default=50)
    ed.add_argument("--json", action="store_true", help="print the service's answer as JSON (for scripts)")
    ed.set_defaults(func=handler(f"{EVENTS}:list_deliveries"))

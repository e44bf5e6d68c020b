"""`leadflow lead ...`: read a lead and its timeline from the dispatcher."""

from __future__ import annotations

import argparse
import json
from typing import Any

from google.protobuf.json_format import MessageToDict

from leadflow.v1 import dispatcher_pb2
from leadflow_cli.connections import dispatcher
from leadflow_core.settings import CommonSettings


def _timeline(args: argparse.Namespace) -> int:
    stub = dispatcher(CommonSettings())
    reply = stub.GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=args.tenant, lead_id=args.lead_id))
    if args.json:
        print(json.dumps(MessageToDict(reply), indent=2))
        return 0
    print(f"dial state: {dispatcher_pb2.DialState.Name(reply.dial_state)}")
    for ev in reply.events:
        at = ev.at.ToDatetime().isoformat(timespec="milliseconds")
        print(f"{at}Z  {ev.kind:<16} {ev.detail_json}")
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    lead = sub.add_parser("lead", help="read leads")
    lsub = lead.add_subparsers(dest="lead_command", required=True, metavar="ACTION")
    tl = lsub.add_parser("timeline", help="a lead's timeline: received, decided, enriched, synced, dialed")
    tl.add_argument("tenant")
    tl.add_argument("lead_id")
    tl.add_argument("--json", action="store_true", help="print the raw JSON")
    tl.set_defaults(func=_timeline)

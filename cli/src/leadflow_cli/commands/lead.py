"""`leadflow lead ...`: read a lead and its timeline from the dispatcher."""

from __future__ import annotations

import argparse
import json

from google.protobuf.json_format import MessageToDict

from leadflow.v1 import dispatcher_pb2
from leadflow_cli.connections import dispatcher
from leadflow_cli.parsers.lead import register as register
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

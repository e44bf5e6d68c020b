"""Arguments of `leadflow requests`: the gateway's inbound request log (list) and replay."""

from __future__ import annotations

import argparse
from typing import Any

from leadflow_cli.lazy import handler

REQUESTS = "leadflow_cli.commands.requests"


def _filters(p: argparse.ArgumentParser, limit: int) -> None:
    p.add_argument("--source", default="", help="api, form, meta, hubspot, ...")
    p.add_argument("--status", type=int, default=0, help="only requests answered with this HTTP status")
    p.add_argument(
        "--since", default="", help="ISO 8601 instant (2026-12-01T09:00:00Z) or an age: 30m, 2h, 7d"
    )
    p.add_argument("--until", default="", help="as --since")
    p.add_argument("--limit", type=int, default=limit)
    p.add_argument("--json", action="store_true", help="print the service's answer as JSON (for scripts)")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    requests = sub.add_parser("requests", help="webhook requests the gateway received: list, show, replay")
    rsub = requests.add_subparsers(dest="requests_command", required=True, metavar="ACTION")
    rl = rsub.add_parser("list", help="a tenant's logged requests, newest first")
    rl.add_argument("tenant")
    _filters(rl, 50)
    rl.set_defaults(func=handler(f"{REQUESTS}:list_requests"))
    rs = rsub.add_parser("show", help="one logged request: headers (secrets removed) and body")
    rs.add_argument("tenant")
    rs.add_argument("request_log_id")
    rs.add_argument("--json", action="store_true")
    rs.set_defaults(func=handler(f"{REQUESTS}:show_request"))
    rr = rsub.add_parser(
        "replay",
        help="run logged requests through the pipeline again (no signature check: verified at intake)",
    )
    rr.add_argument("tenant")
    rr.add_argument(
        "request_log_id", nargs="?", default="", help="one request; omit to replay a filtered range"
    )
    _filters(rr, 100)
    rr.add_argument("--reason", required=True, help="why (kept in the admin audit log with your name)")
    rr.set_defaults(func=handler(f"{REQUESTS}:replay_requests"))

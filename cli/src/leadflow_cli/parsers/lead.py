"""Arguments of `leadflow lead` (no heavy imports: `--help` stays fast)."""

from __future__ import annotations

import argparse
from typing import Any

from leadflow_cli.lazy import handler


def register(sub: argparse._SubParsersAction[Any]) -> None:
    lead = sub.add_parser("lead", help="read leads")
    lsub = lead.add_subparsers(dest="lead_command", required=True, metavar="ACTION")
    tl = lsub.add_parser("timeline", help="a lead's timeline: received, decided, enriched, synced, dialed")
    tl.add_argument("tenant")
    tl.add_argument("lead_id")
    tl.add_argument("--json", action="store_true", help="print the raw JSON")
    tl.set_defaults(func=handler("leadflow_cli.commands.lead:_timeline"))

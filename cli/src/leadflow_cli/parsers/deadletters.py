"""Arguments of `leadflow deadletters` (no heavy imports: `--help` stays fast)."""

from __future__ import annotations

import argparse
from typing import Any

from leadflow_cli.lazy import handler


def register(sub: argparse._SubParsersAction[Any]) -> None:
    group = sub.add_parser(
        "deadletters", help="jobs the workers gave up on: list, show, replay, purge, resolve"
    )
    dsub = group.add_subparsers(dest="deadletters_command", required=True, metavar="ACTION")

    ls = dsub.add_parser("list", help="a tenant's dead letters (default: open ones)")
    ls.add_argument("tenant")
    ls.add_argument("--queue", default="", help="only this queue (enrich, crm_sync, dial.high, ...)")
    ls.add_argument("--state", default="open", help="open, replayed, resolved, purged or all")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true", help="print the raw JSON")
    ls.set_defaults(func=handler("leadflow_cli.commands.deadletters:_list"))

    show = dsub.add_parser("show", help="one dead letter with its error and message")
    show.add_argument("tenant")
    show.add_argument("dead_letter_id")
    show.set_defaults(func=handler("leadflow_cli.commands.deadletters:_show"))

    replay = dsub.add_parser("replay", help="run one dead letter's job again, or all with --all")
    replay.add_argument("tenant")
    replay.add_argument("dead_letter_id", nargs="?")
    replay.add_argument("--all", action="store_true", help="every open dead letter (of --queue)")
    replay.add_argument("--queue", default="")
    replay.set_defaults(func=handler("leadflow_cli.commands.deadletters:_replay"))

    purge = dsub.add_parser("purge", help="drop a tenant's open dead letters (of --queue)")
    purge.add_argument("tenant")
    purge.add_argument("--queue", default="")
    purge.set_defaults(func=handler("leadflow_cli.commands.deadletters:_purge"))

    resolve = dsub.add_parser("resolve", help="mark a dead letter handled, with a note")
    resolve.add_argument("tenant")
    resolve.add_argument("dead_letter_id")
    resolve.add_argument("--note", default="", help="what was done about it")
    resolve.set_defaults(func=handler("leadflow_cli.commands.deadletters:_resolve"))

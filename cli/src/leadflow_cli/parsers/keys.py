"""Arguments of `leadflow keys` (no heavy imports: `--help` stays fast)."""

from __future__ import annotations

import argparse
from typing import Any

from leadflow_cli.lazy import handler

KEYS = "leadflow_cli.commands.keys"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    keys = sub.add_parser("keys", help="a tenant's API keys: create (shown once), list, revoke")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    kc = ksub.add_parser("create", help="issue a named key; the key is printed once and never again")
    kc.add_argument("tenant")
    kc.add_argument("--name", default="", help="the key's name, unique among valid keys (default key-<id>)")
    kc.add_argument(
        "--scope",
        action="append",
        choices=("ingest", "read"),
        default=[],
        help="what the key may do, repeatable: 'ingest' (submit leads), 'read' (read leads back);"
        " default both",
    )
    kc.add_argument("--revoke-others", action="store_true", help="revoke the tenant's other keys")
    kc.set_defaults(func=handler(f"{KEYS}:create"))

    kl = ksub.add_parser("list", help="name, prefix, scopes, created, last used, revoked (never the key)")
    kl.add_argument("tenant")
    kl.add_argument("--json", action="store_true", help="print the service's answer as JSON (for scripts)")
    kl.set_defaults(func=handler(f"{KEYS}:list_keys"))

    kr = ksub.add_parser("revoke", help="revoke one key; it is refused from the next request on")
    kr.add_argument("tenant")
    kr.add_argument("key_id", help="the listed prefix (lf_...) or key id")
    kr.set_defaults(func=handler(f"{KEYS}:revoke"))

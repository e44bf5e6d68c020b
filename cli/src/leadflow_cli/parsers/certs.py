"""Arguments of `leadflow certs` (no heavy imports: `--help` stays fast)."""

from __future__ import annotations

import argparse
from typing import Any

from leadflow_cli.lazy import handler


def register(sub: argparse._SubParsersAction[Any]) -> None:
    certs = sub.add_parser("certs", help="development certificates for mutual TLS")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    create = certs_sub.add_parser("create", help="create the development CA and component certificates")
    create.add_argument("--dir", default="var/tls", help="where to write them (default ./var/tls)")
    create.set_defaults(func=handler("leadflow_cli.commands.certs:_create"))

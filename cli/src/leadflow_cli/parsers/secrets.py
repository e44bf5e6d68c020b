"""Arguments of `leadflow secrets` (no heavy imports: `--help` stays fast)."""

from __future__ import annotations

import argparse
from typing import Any

from leadflow_cli.lazy import handler


def register(sub: argparse._SubParsersAction[Any]) -> None:
    secrets = sub.add_parser("secrets", help="key-encryption keys and rotation of stored tenant secrets")
    secrets_sub = secrets.add_subparsers(dest="secrets_command", required=True)
    add = secrets_sub.add_parser("add-key", help="write a new random key into the keyring directory")
    add.add_argument("--dir", help="keyring directory (default LEADFLOW_KEYRING_DIR or ./var/keyring)")
    add.add_argument("--id", help="key id (default k<UTC timestamp>)")
    add.set_defaults(func=handler("leadflow_cli.commands.secrets:_add_key"))
    rotate = secrets_sub.add_parser(
        "rotate", help="re-encrypt every stored secret under the primary key (compliance does it, online)"
    )
    rotate.set_defaults(func=handler("leadflow_cli.commands.secrets:_rotate"))

"""`leadflow secrets ...`: keys that encrypt tenant secrets at rest, and their rotation."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from leadflow.v1 import tenants_pb2
from leadflow_cli.connections import tenant_admin
from leadflow_core.keyring import KeyringSettings, add_key
from leadflow_core.settings import CommonSettings


def _add_key(args: argparse.Namespace) -> int:
    directory = Path(args.dir or KeyringSettings().keyring_dir)
    # Time-stamped ids sort in creation order, so the newest key is the primary.
    kid = args.id or datetime.now(UTC).strftime("k%Y%m%dT%H%M%SZ")
    path = add_key(directory, kid)
    print(f"added key {kid} ({path}); it is the primary unless LEADFLOW_KEK_PRIMARY names another")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    reply = tenant_admin(CommonSettings()).RotateSecrets(tenants_pb2.RotateSecretsRequest())
    print(
        f"re-encrypted {reply.values_resealed} secret(s) of {reply.tenants} tenant(s) "
        f"under {reply.primary_key_id}; keys in use: {', '.join(reply.key_ids_in_use) or 'none'}"
    )
    old = [k for k in reply.key_ids_in_use if k != reply.primary_key_id]
    if old:
        print(f"still in use: {', '.join(old)}; run rotate again before removing them")
        return 1
    print("older keys are no longer needed: remove them from the keyring")
    return 0

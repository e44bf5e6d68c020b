"""Arguments of `leadflow tenant` (no heavy imports: `--help` stays fast)."""

from __future__ import annotations

import argparse
from typing import Any

from leadflow_cli.lazy import handler


def register(sub: argparse._SubParsersAction[Any]) -> None:
    tenant = sub.add_parser("tenant", help="apply Tenant manifests, read tenants, issue API keys")
    tsub = tenant.add_subparsers(dest="tenant_command", required=True, metavar="ACTION")

    apply = tsub.add_parser("apply", help="create or update tenants from YAML (Tenant and Secret docs)")
    apply.add_argument("-f", "--file", action="append", required=True, help="YAML file (repeatable)")
    apply.set_defaults(func=handler("leadflow_cli.commands.tenant:_apply"))

    get = tsub.add_parser("get", help="show a tenant (secrets are never shown)")
    get.add_argument("name")
    get.set_defaults(func=handler("leadflow_cli.commands.tenant:_get"))

    lst = tsub.add_parser("list", help="list tenants")
    lst.add_argument("--all", action="store_true", help="include deactivated tenants")
    lst.set_defaults(func=handler("leadflow_cli.commands.tenant:_list"))

    key = tsub.add_parser("create-key", help="issue a new API key for a tenant")
    key.add_argument("name")
    key.add_argument("--revoke", action="store_true", help="revoke the tenant's existing keys")
    key.set_defaults(func=handler("leadflow_cli.commands.tenant:_create_key"))

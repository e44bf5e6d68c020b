"""`leadflow keys ...`: a tenant's API keys through TenantAdminService."""

from __future__ import annotations

import argparse

from google.protobuf.timestamp_pb2 import Timestamp

from leadflow.v1 import tenants_pb2
from leadflow_cli.connections import tenant_admin
from leadflow_cli.tables import print_json, table
from leadflow_core.settings import CommonSettings


def _when(ts: Timestamp) -> str:
    return ts.ToDatetime().isoformat(timespec="seconds") + "Z" if ts.seconds else ""


def create(args: argparse.Namespace) -> int:
    reply = tenant_admin(CommonSettings()).CreateApiKey(
        tenants_pb2.CreateApiKeyRequest(
            name=args.tenant, key_name=args.name, scopes=args.scope, revoke_existing=args.revoke_others
        )
    )
    info = reply.info
    print(f"key {info.name!r} ({info.prefix}, {'+'.join(info.scopes)}); the key is shown once:")
    print(reply.api_key)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    reply = tenant_admin(CommonSettings()).ListApiKeys(tenants_pb2.ListApiKeysRequest(name=args.tenant))
    if args.json:
        print_json(reply)
        return 0
    rows = [
        (
            k.name,
            k.prefix or f"(older key, id {k.key_id})",
            "+".join(k.scopes),
            _when(k.created_at),
            _when(k.last_used_at) or "never",
            _when(k.revoked_at) or "valid",
        )
        for k in reply.keys
    ]
    print(table(rows, ("NAME", "PREFIX", "SCOPES", "CREATED", "LAST USED", "REVOKED")))
    return 0


def revoke(args: argparse.Namespace) -> int:
    info = tenant_admin(CommonSettings()).RevokeApiKey(
        tenants_pb2.RevokeApiKeyRequest(tenant=args.tenant, key_id=args.key_id.removeprefix("lf_"))
    )
    print(f"key {info.name!r} ({info.prefix or info.key_id}) revoked at {_when(info.revoked_at)}")
    return 0

"""`leadflow tenant ...`: apply Tenant manifests and manage API keys through TenantAdminService."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from leadflow.v1 import tenants_pb2
from leadflow_cli.connections import tenant_admin
from leadflow_cli.manifests import build_tenant, load_documents, parse_tenants
from leadflow_cli.parsers.tenant import register as register
from leadflow_core.settings import CommonSettings


def _apply(args: argparse.Namespace) -> int:
    tenants, secrets = parse_tenants(load_documents([Path(p) for p in args.file]))
    if not tenants:
        raise ValueError("no Tenant in the given files")
    stub = tenant_admin(CommonSettings())
    for manifest in tenants:
        reply = stub.ApplyTenant(
            tenants_pb2.ApplyTenantRequest(tenant=build_tenant(manifest, secrets), issue_api_key=True)
        )
        state = "created" if reply.created else ("configured" if reply.changed else "unchanged")
        print(f"tenant/{manifest.name} {state}")
        if reply.api_key:
            print(f"api key (shown once): {reply.api_key}")
    return 0


def _get(args: argparse.Namespace) -> int:
    stub = tenant_admin(CommonSettings())
    reply = stub.GetTenant(tenants_pb2.GetTenantRequest(name=args.name))
    print(json.dumps(MessageToDict(reply.tenant), indent=2, sort_keys=True))
    return 0


def _list(args: argparse.Namespace) -> int:
    stub = tenant_admin(CommonSettings())
    reply = stub.ListTenants(tenants_pb2.ListTenantsRequest(include_inactive=args.all))
    for t in reply.tenants:
        flags = ",".join(f for f, on in (("paused", t.paused), ("inactive", not t.active)) if on)
        print(f"{t.name}\t{t.display_name}\t{flags or 'active'}")
    return 0


def _create_key(args: argparse.Namespace) -> int:
    stub = tenant_admin(CommonSettings())
    reply = stub.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=args.name, revoke_existing=args.revoke))
    print(f"api key (shown once): {reply.api_key}")
    return 0

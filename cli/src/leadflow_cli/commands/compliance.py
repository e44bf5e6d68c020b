"""`leadflow compliance ...`: consent, Do-Not-Call, pause, emergency stop and the audit log."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from leadflow.v1 import compliance_pb2, lead_pb2, tenants_pb2
from leadflow_cli.connections import compliance, tenant_admin
from leadflow_cli.parsers.compliance import register as register
from leadflow_core.settings import CommonSettings
from leadflow_core.timestamps import to_proto

CHUNK_BYTES = 1 << 20
ACTOR = "cli"


def _instant(value: str) -> datetime:
    """ISO 8601 date or date-time; naive values are UTC."""
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _consent_record(args: argparse.Namespace) -> int:
    evidence = lead_pb2.ConsentEvidence(
        granted=True,
        disclosure_text=args.disclosure,
        page_url=args.page_url,
        ip=args.ip,
        trustedform_cert_url=args.trustedform,
        jornaya_leadid=args.jornaya,
    )
    if args.at:
        evidence.consented_at.CopyFrom(to_proto(_instant(args.at)))
    reply = compliance(CommonSettings()).RecordConsent(
        compliance_pb2.RecordConsentRequest(
            tenant=args.tenant, phone_e164=args.phone, evidence=evidence, actor=ACTOR
        )
    )
    print(f"consent recorded: {reply.consent_id}")
    return 0


def _consent_revoke(args: argparse.Namespace) -> int:
    reply = compliance(CommonSettings()).RevokeConsent(
        compliance_pb2.RevokeConsentRequest(
            tenant=args.tenant, phone_e164=args.phone, channel="cli", note=args.note, actor=ACTOR
        )
    )
    print(f"consent revoked at {reply.revoked_at.ToJsonString()}")
    return 0


def _dnc_add(args: argparse.Namespace) -> int:
    reply = compliance(CommonSettings()).AddDoNotCall(
        compliance_pb2.AddDoNotCallRequest(
            tenant=args.tenant, phone_e164=args.phone, reason=args.reason, actor=ACTOR
        )
    )
    print("added" if reply.added else "already listed")
    return 0


def _dnc_remove(args: argparse.Namespace) -> int:
    reply = compliance(CommonSettings()).RemoveDoNotCall(
        compliance_pb2.RemoveDoNotCallRequest(tenant=args.tenant, phone_e164=args.phone, actor=ACTOR)
    )
    print("removed" if reply.removed else "not listed")
    return 0


def _chunks(path: Path, replace: bool) -> Iterator[compliance_pb2.ImportDncRegistryChunk]:
    with path.open("rb") as f:
        first = True
        while data := f.read(CHUNK_BYTES):
            yield compliance_pb2.ImportDncRegistryChunk(data=data, replace=replace and first)
            first = False


def _dnc_import(args: argparse.Namespace) -> int:
    stub = compliance(CommonSettings())
    reply = stub.ImportDncRegistry(_chunks(Path(args.file), not args.add), timeout=3600)
    print(
        f"registry {reply.registry_version}: {reply.numbers_loaded} numbers, "
        f"{reply.lines_rejected} lines rejected"
    )
    return 0


def _pause(args: argparse.Namespace) -> int:
    reply = tenant_admin(CommonSettings()).SetPaused(
        tenants_pb2.SetPausedRequest(name=args.tenant, paused=True, reason=args.reason)
    )
    print(f"tenant/{reply.tenant.name} paused")
    return 0


def _resume(args: argparse.Namespace) -> int:
    reply = tenant_admin(CommonSettings()).SetPaused(
        tenants_pb2.SetPausedRequest(name=args.tenant, paused=False)
    )
    print(f"tenant/{reply.tenant.name} resumed")
    return 0


def _estop_set(args: argparse.Namespace) -> int:
    reply = compliance(CommonSettings()).SetEmergencyStop(
        compliance_pb2.SetEmergencyStopRequest(
            tenant=args.tenant, duration_seconds=args.duration, reason=args.reason, actor=ACTOR
        )
    )
    print(f"emergency stop ({args.tenant or 'all tenants'}) until {reply.until.ToJsonString()}")
    return 0


def _estop_clear(args: argparse.Namespace) -> int:
    compliance(CommonSettings()).ClearEmergencyStop(
        compliance_pb2.ClearEmergencyStopRequest(tenant=args.tenant, actor=ACTOR)
    )
    print(f"emergency stop cleared ({args.tenant or 'all tenants'})")
    return 0


def _audit_export(args: argparse.Namespace) -> int:
    req = compliance_pb2.ExportAuditLogRequest(tenant=args.tenant)
    if args.since:
        getattr(req, "from").CopyFrom(to_proto(_instant(args.since)))
    if args.until:
        req.to.CopyFrom(to_proto(_instant(args.until)))
    for record in compliance(CommonSettings()).ExportAuditLog(req, timeout=600):
        print(json.dumps(MessageToDict(record, preserving_proto_field_name=True), sort_keys=True))
    return 0

"""`leadflow compliance ...`: consent, Do-Not-Call, pause, emergency stop, the audit log and the rules."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from leadflow.v1 import compliance_pb2, lead_pb2, tenants_pb2
from leadflow_cli.connections import compliance, tenant_admin
from leadflow_cli.parsers.compliance import register as register
from leadflow_compliance.rule_table import RuleTable, default_table
from leadflow_core.settings import CommonSettings
from leadflow_core.timestamps import to_proto

CHUNK_BYTES = 1 << 20


def _actor() -> str:
    """The name a person gives (LEADFLOW_ACTOR, else their login); compliance records it as
    claimed beside the verified `cli` certificate identity."""
    try:
        return os.environ.get("LEADFLOW_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return ""


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
        seller=args.seller,
        disclosure_version=args.disclosure_version,
        form_submission_id=args.form_submission,
    )
    if args.at:
        evidence.consented_at.CopyFrom(to_proto(_instant(args.at)))
    reply = compliance(CommonSettings()).RecordConsent(
        compliance_pb2.RecordConsentRequest(
            tenant=args.tenant, phone_e164=args.phone, evidence=evidence, actor=_actor()
        )
    )
    print(f"consent recorded: {reply.consent_id}")
    if not reply.verified:
        print(f"unverified (not auto-dialed), missing: {', '.join(reply.missing)}")
    return 0


def _consent_revoke(args: argparse.Namespace) -> int:
    reply = compliance(CommonSettings()).RevokeConsent(
        compliance_pb2.RevokeConsentRequest(
            tenant=args.tenant, phone_e164=args.phone, channel="cli", note=args.note, actor=_actor()
        )
    )
    print(f"consent revoked at {reply.revoked_at.ToJsonString()}")
    return 0


def _dnc_add(args: argparse.Namespace) -> int:
    reply = compliance(CommonSettings()).AddDoNotCall(
        compliance_pb2.AddDoNotCallRequest(
            tenant=args.tenant, phone_e164=args.phone, reason=args.reason, actor=_actor()
        )
    )
    print("added" if reply.added else "already listed")
    return 0


def _dnc_remove(args: argparse.Namespace) -> int:
    reply = compliance(CommonSettings()).RemoveDoNotCall(
        compliance_pb2.RemoveDoNotCallRequest(tenant=args.tenant, phone_e164=args.phone, actor=_actor())
    )
    print("removed" if reply.removed else "not listed")
    return 0


def _chunks(path: Path, replace: bool, list_id: str = "") -> Iterator[compliance_pb2.ImportDncRegistryChunk]:
    with path.open("rb") as f:
        first = True
        while data := f.read(CHUNK_BYTES):
            yield compliance_pb2.ImportDncRegistryChunk(
                data=data, replace=replace and first, list=list_id if first else ""
            )
            first = False


def _dnc_import(args: argparse.Namespace) -> int:
    stub = compliance(CommonSettings())
    reply = stub.ImportDncRegistry(_chunks(Path(args.file), not args.add, args.list), timeout=3600)
    print(
        f"{args.list or 'federal'} list {reply.registry_version}: {reply.numbers_loaded} numbers, "
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
            tenant=args.tenant, duration_seconds=args.duration, reason=args.reason, actor=_actor()
        )
    )
    print(f"emergency stop ({args.tenant or 'all tenants'}) until {reply.until.ToJsonString()}")
    return 0


def _estop_clear(args: argparse.Namespace) -> int:
    compliance(CommonSettings()).ClearEmergencyStop(
        compliance_pb2.ClearEmergencyStopRequest(tenant=args.tenant, actor=_actor())
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


def rule_rows(table: RuleTable, code: str = "") -> list[dict[str, str]]:
    """The rules table as flat rows (one per rule), for one jurisdiction or all of them."""
    rows: list[dict[str, str]] = []
    for state in sorted(table.states) if not code else [code]:
        row = table.states[state]
        rules = row.rules()
        if not rules:
            source = "secondary" if row.finding_secondary else "statute"
            rows.append(_row(state, row.name, "finding", row.finding, "-", "-", source, ""))
        for kind, rule in rules:
            source = "secondary" if rule.secondary_source else "statute"
            rows.append(
                _row(
                    state,
                    row.name,
                    kind,
                    rule.describe(),
                    rule.statute,
                    rule.effective_label,
                    source,
                    rule.note,
                )
            )
    return rows


def _row(*values: str) -> dict[str, str]:
    keys = ("state", "name", "rule", "what", "citation", "effective", "source", "note")
    return dict(zip(keys, values, strict=True))


def _rules(args: argparse.Namespace) -> int:
    # Read from the packaged rules data, so the table prints offline, with no server.
    table = default_table()
    code = args.state.strip().upper()
    if code and code not in table.states:
        print(f"unknown state code {args.state!r}; known: {' '.join(sorted(table.states))}", file=sys.stderr)
        return 2
    rows = rule_rows(table, code)
    if args.json:
        for r in rows:
            print(json.dumps(r, sort_keys=True))
        return 0
    fed = table.federal.calling_hours
    print(f"rules {table.version}; federal: {fed.hours.describe()} callee local time ({fed.statute})")
    print("'secondary' = rests on a compliance chart or summary, not yet checked against the statute")
    columns = ("state", "rule", "what", "citation", "effective", "source")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in columns).rstrip())
        if r["note"]:
            print(f"{'':{widths['state']}}  note: {r['note']}")
    return 0

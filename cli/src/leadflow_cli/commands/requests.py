"""`leadflow requests`: list, show and replay the gateway's inbound request log (AdminService)."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from leadflow.v1 import admin_pb2, inbound_pb2
from leadflow_cli.connections import actor, admin
from leadflow_cli.tables import print_json, table
from leadflow_core.settings import CommonSettings

_AGE = re.compile(r"^([0-9]+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def instant(text: str, now: datetime | None = None) -> datetime | None:
    """An ISO 8601 instant (UTC when no offset is given) or an age before now ("30m", "7d")."""
    text = text.strip()
    if not text:
        return None
    m = _AGE.match(text)
    if m:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise SystemExit(f"not an instant or an age: {text!r} (e.g. 2026-12-01T09:00:00Z, 30m, 7d)") from err
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _ts(at: datetime | None) -> Timestamp | None:
    if at is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(at.astimezone(UTC))
    return ts


def request_filter(args: argparse.Namespace, without_body: bool) -> admin_pb2.ListRequestsRequest:
    return admin_pb2.ListRequestsRequest(
        tenant=args.tenant,
        source=args.source,
        status=args.status,
        since=_ts(instant(args.since)),
        until=_ts(instant(args.until)),
        limit=args.limit,
        without_body=without_body,
    )


def _rows(requests: list[inbound_pb2.InboundRequest]) -> str:
    return table(
        [
            (
                r.request_log_id,
                r.received_at.ToDatetime().isoformat(timespec="seconds") + "Z",
                r.source,
                r.status,
                r.error_code,
                "yes" if r.verified else "no",
                r.replay_of,
                ",".join(r.lead_ids),
            )
            for r in requests
        ],
        ("ID", "RECEIVED", "SOURCE", "STATUS", "ERROR", "VERIFIED", "REPLAY OF", "LEADS"),
    )


def list_requests(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).ListRequests(request_filter(args, without_body=True))
    if args.json:
        print_json(reply)
    elif not reply.requests:
        print("no requests")
    else:
        print(_rows(list(reply.requests)))
    return 0


def show_request(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).ListRequests(
        admin_pb2.ListRequestsRequest(tenant=args.tenant, request_log_id=args.request_log_id)
    )
    if not reply.requests:
        print(f"request {args.request_log_id} not found (or past the tenant's retention)")
        return 1
    r = reply.requests[0]
    if args.json:
        print_json(r)
        return 0
    print(_rows([r]))
    print(f"\n{r.method} {r.path}{'?' + r.query if r.query else ''}")
    for name, value in sorted(r.headers.items()):
        print(f"{name}: {value}")
    print()
    print(r.body.decode("utf-8", "replace"))
    return 0


def replay_requests(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).ReplayRequests(
        admin_pb2.ReplayRequestsRequest(
            tenant=args.tenant,
            request_log_id=args.request_log_id,
            filter=request_filter(args, without_body=True),
            reason=args.reason,
        ),
        metadata=actor(),
        timeout=600,
    )
    if args.json:
        print_json(reply)
    else:
        print(
            table(
                [(o.request_log_id, o.status or "", ",".join(o.lead_ids), o.error) for o in reply.outcomes],
                ("REQUEST", "STATUS", "LEADS", "ERROR"),
            )
        )
    return 1 if any(o.error for o in reply.outcomes) else 0

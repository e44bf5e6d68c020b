"""`leadflow dnc ...`: a tenant's do-not-call list."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from leadflow.v1 import compliance_pb2
from leadflow_cli.connections import compliance
from leadflow_cli.progress import Progress
from leadflow_cli.tables import print_json, table
from leadflow_core.settings import CommonSettings

CHUNK_BYTES = 1 << 20
ACTOR = "leadflow-cli"


def _when(ts: Timestamp) -> str:
    return ts.ToDatetime().isoformat(timespec="seconds") + "Z" if ts.seconds else ""


def dnc_list(args: argparse.Namespace) -> int:
    reply = compliance(CommonSettings()).ListDoNotCall(
        compliance_pb2.ListDoNotCallRequest(tenant=args.tenant, limit=args.limit)
    )
    if args.json:
        print_json(reply)
        return 0
    print(
        table(
            [(e.subject_hash, _when(e.added_at), e.actor, e.reason) for e in reply.entries],
            ("NUMBER (KEYED HASH)", "ADDED", "BY", "REASON"),
        )
    )
    print(f"{len(reply.entries)} of {reply.total} shown (numbers are kept only as keyed hashes)")
    return 0


def dnc_add(args: argparse.Namespace) -> int:
    reply = compliance(CommonSettings()).AddDoNotCall(
        compliance_pb2.AddDoNotCallRequest(
            tenant=args.tenant, phone_e164=args.phone, reason=args.reason, actor=ACTOR
        )
    )
    print("added" if reply.added else "already on the list")
    return 0


def dnc_remove(args: argparse.Namespace) -> int:
    reply = compliance(CommonSettings()).RemoveDoNotCall(
        compliance_pb2.RemoveDoNotCallRequest(tenant=args.tenant, phone_e164=args.phone, actor=ACTOR)
    )
    print("removed" if reply.removed else "was not on the list")
    return 0


def _chunks(
    path: Path, replace: bool, progress: Progress, list_id: str = ""
) -> Iterator[compliance_pb2.ImportDncRegistryChunk]:
    with path.open("rb") as f:
        first = True
        while data := f.read(CHUNK_BYTES):
            progress.advance(len(data))
            yield compliance_pb2.ImportDncRegistryChunk(
                data=data, replace=replace and first, list=list_id if first else ""
            )
            first = False


def dnc_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    progress = Progress(path.stat().st_size, f"importing {path.name}")
    reply = compliance(CommonSettings()).ImportDncRegistry(
        _chunks(path, not args.add, progress, args.list), timeout=3600
    )
    progress.finish()
    print(
        f"{args.list} list {reply.registry_version}: {reply.numbers_loaded} numbers, "
        f"{reply.lines_rejected} lines rejected"
    )
    return 0

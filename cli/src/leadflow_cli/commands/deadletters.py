"""`leadflow deadletters ...`: list, inspect, replay, purge and resolve a tenant's dead letters."""

from __future__ import annotations

import argparse
import json

from google.protobuf.json_format import MessageToDict

from leadflow.v1 import dispatcher_pb2
from leadflow_cli.connections import dispatcher
from leadflow_cli.parsers.deadletters import register as register
from leadflow_core.settings import CommonSettings


def _print(dl: dispatcher_pb2.DeadLetter) -> None:
    at = dl.failed_at.ToDatetime().isoformat(timespec="seconds")
    print(
        f"{dl.dead_letter_id}  {at}Z  {dl.queue:<14} {dl.state:<9} lead={dl.lead_id} "
        f"attempts={dl.attempts} {dl.error_class}: {dl.error[:80]}"
    )


def _list(args: argparse.Namespace) -> int:
    reply = dispatcher(CommonSettings()).ListDeadLetters(
        dispatcher_pb2.ListDeadLettersRequest(
            tenant=args.tenant, queue=args.queue, state=args.state, limit=args.limit
        )
    )
    if args.json:
        print(json.dumps(MessageToDict(reply), indent=2))
        return 0
    for dl in reply.dead_letters:
        _print(dl)
    if not reply.dead_letters:
        print("no dead letters")
    return 0


def _show(args: argparse.Namespace) -> int:
    dl = dispatcher(CommonSettings()).GetDeadLetter(
        dispatcher_pb2.GetDeadLetterRequest(tenant=args.tenant, dead_letter_id=args.dead_letter_id)
    )
    print(json.dumps(MessageToDict(dl), indent=2))
    return 0


def _replay(args: argparse.Namespace) -> int:
    if not args.dead_letter_id and not args.all:
        raise ValueError("name a dead letter id, or pass --all")
    reply = dispatcher(CommonSettings()).ReplayDeadLetters(
        dispatcher_pb2.ReplayDeadLettersRequest(
            tenant=args.tenant, dead_letter_id=args.dead_letter_id or "", queue=args.queue, all=args.all
        )
    )
    print(f"replayed {reply.replayed}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    reply = dispatcher(CommonSettings()).PurgeDeadLetters(
        dispatcher_pb2.PurgeDeadLettersRequest(tenant=args.tenant, queue=args.queue)
    )
    print(f"purged {reply.purged}")
    return 0


def _resolve(args: argparse.Namespace) -> int:
    dl = dispatcher(CommonSettings()).ResolveDeadLetter(
        dispatcher_pb2.ResolveDeadLetterRequest(
            tenant=args.tenant, dead_letter_id=args.dead_letter_id, note=args.note
        )
    )
    _print(dl)
    return 0

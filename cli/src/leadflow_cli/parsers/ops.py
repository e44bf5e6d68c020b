"""Arguments of the everyday commands over AdminService (status, queues, review, errors, leads,
calls, limits, pause-tenant, emergency, audit)."""

from __future__ import annotations

import argparse
from typing import Any

from leadflow_cli.lazy import handler

OPS = "leadflow_cli.commands.ops"


def _json(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--json", action="store_true", help="print the service's answer as JSON (for scripts)")
    return p


def _reason(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", required=True, help="why (kept in the admin audit log with your name)")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    _json(
        sub.add_parser("status", help="health of every component and the state of every queue")
    ).set_defaults(func=handler(f"{OPS}:status"))

    queues = _json(sub.add_parser("queues", help="queue depth, delay, age; pause and resume"))
    qsub = queues.add_subparsers(dest="queues_command", metavar="ACTION")
    queues.set_defaults(func=handler(f"{OPS}:queues_list"), queue="")
    ql = _json(qsub.add_parser("list", help="every queue (default)"))
    ql.add_argument("queue", nargs="?", default="", help="one queue, or 'dial' for every dial queue")
    ql.set_defaults(func=handler(f"{OPS}:queues_list"))
    for action, text in (
        ("pause", "stop handing work to workers (intake still stores leads)"),
        ("resume", "resume"),
    ):
        p = _json(qsub.add_parser(action, help=text))
        p.add_argument(
            "queue",
            nargs="?",
            default="",
            help="dial.high, enrich, ...; 'dial': every dial queue; default: all",
        )
        _reason(p)
        p.set_defaults(func=handler(f"{OPS}:queues_{action}"))

    review = sub.add_parser("review", help="leads a person must look at: list, approve, reject")
    rsub = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    rl = _json(rsub.add_parser("list", help="open reviews (or --state approved|rejected|all)"))
    rl.add_argument("--tenant", default="")
    rl.add_argument("--state", default="open")
    rl.add_argument("--limit", type=int, default=100)
    rl.set_defaults(func=handler(f"{OPS}:review_list"))
    ra = _json(rsub.add_parser("approve", help="schedule a dial (compliance still decides at the gate)"))
    ra.add_argument("tenant")
    ra.add_argument("lead_id")
    ra.add_argument("--state", default="", help="the callee's US state as you established it, e.g. NY")
    _reason(ra)
    ra.set_defaults(func=handler(f"{OPS}:review_approve"))
    rr = _json(rsub.add_parser("reject", help="never auto-dial this lead"))
    rr.add_argument("tenant")
    rr.add_argument("lead_id")
    _reason(rr)
    rr.set_defaults(func=handler(f"{OPS}:review_reject"))

    errors = _json(sub.add_parser("errors", help="failed jobs by class, queue and source; resolve one"))
    esub = errors.add_subparsers(dest="errors_command", metavar="ACTION")
    errors.set_defaults(func=handler(f"{OPS}:errors_list"), tenant="", window=3600)
    el = _json(esub.add_parser("list", help="error statistics over a window (default)"))
    el.add_argument("--tenant", default="")
    el.add_argument("--window", type=int, default=3600, help="seconds (default 3600)")
    el.set_defaults(func=handler(f"{OPS}:errors_list"))
    er = _json(esub.add_parser("resolve", help="mark a dead letter handled"))
    er.add_argument("tenant")
    er.add_argument("dead_letter_id")
    _reason(er)
    er.set_defaults(func=handler(f"{OPS}:errors_resolve"))

    leads = sub.add_parser("leads", help="find leads by phone, email or id; timeline; statistics")
    lsub = leads.add_subparsers(dest="leads_command", required=True, metavar="ACTION")
    ls = _json(lsub.add_parser("search", help="a tenant's leads by phone, email or id"))
    ls.add_argument("tenant")
    ls.add_argument("--phone", default="", help="E.164, e.g. +12125550123")
    ls.add_argument("--email", default="")
    ls.add_argument("--id", default="", help="lead id")
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(func=handler(f"{OPS}:leads_search"))
    lt = _json(lsub.add_parser("timeline", help="a lead's timeline"))
    lt.add_argument("tenant")
    lt.add_argument("lead_id")
    lt.set_defaults(func=handler(f"{OPS}:leads_timeline"))
    lst = _json(lsub.add_parser("stats", help="received, stored, duplicates, blocked by reason"))
    lst.add_argument("--tenant", default="")
    lst.add_argument("--window", type=int, default=86400, help="seconds (default 86400)")
    lst.set_defaults(func=handler(f"{OPS}:leads_stats"))

    calls = _json(sub.add_parser("calls", help="calls placed, answered, durations and cost by outcome"))
    calls.add_argument("--tenant", default="")
    calls.add_argument("--window", type=int, default=86400, help="seconds (default 86400)")
    calls.set_defaults(func=handler(f"{OPS}:calls"))

    limits = _json(sub.add_parser("limits", help="each tenant's rate limits, concurrency and budget use"))
    limits.add_argument("--tenant", default="")
    limits.set_defaults(func=handler(f"{OPS}:limits"))

    pt = _json(sub.add_parser("pause-tenant", help="pause (or --resume) a tenant's calls"))
    pt.add_argument("tenant")
    pt.add_argument("--resume", action="store_true")
    _reason(pt)
    pt.set_defaults(func=handler(f"{OPS}:tenant_pause"))

    em = sub.add_parser("emergency", help="emergency mode: stop every dial (or one tenant's) for a while")
    emsub = em.add_subparsers(dest="emergency_command", required=True, metavar="ACTION")
    on = _json(emsub.add_parser("on", help="stop dialing"))
    on.add_argument("--tenant", default="", help="default: every tenant")
    on.add_argument("--duration", type=int, required=True, help="seconds")
    _reason(on)
    on.set_defaults(func=handler(f"{OPS}:emergency"))
    off = _json(emsub.add_parser("off", help="lift it"))
    off.add_argument("--tenant", default="", help="default: the global stop")
    _reason(off)
    off.set_defaults(func=handler(f"{OPS}:emergency"))

    audit = _json(sub.add_parser("audit", help="the admin audit log: who did what, when and why"))
    audit.add_argument("--tenant", default="")
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(func=handler(f"{OPS}:audit"))
    register_lists(sub)


LISTS = "leadflow_cli.commands.lists"


def register_lists(sub: argparse._SubParsersAction[Any]) -> None:
    dnc = sub.add_parser("dnc", help="a tenant's do-not-call list: list, add, remove; import the registry")
    dsub = dnc.add_subparsers(dest="dnc_command", required=True, metavar="ACTION")
    dl = _json(dsub.add_parser("list", help="the tenant's entries, newest first (numbers as keyed hashes)"))
    dl.add_argument("tenant")
    dl.add_argument("--limit", type=int, default=100)
    dl.set_defaults(func=handler(f"{LISTS}:dnc_list"))
    da = dsub.add_parser("add", help="add a number (E.164)")
    da.add_argument("tenant")
    da.add_argument("phone")
    da.add_argument("--reason", default="")
    da.set_defaults(func=handler(f"{LISTS}:dnc_add"))
    dr = dsub.add_parser("remove", help="remove a number")
    dr.add_argument("tenant")
    dr.add_argument("phone")
    dr.set_defaults(func=handler(f"{LISTS}:dnc_remove"))
    di = dsub.add_parser(
        "import", help="load a National DNC Registry or state list file, with a progress bar on stderr"
    )
    di.add_argument("file")
    di.add_argument(
        "--list",
        default="federal",
        help="which list: 'federal' (the National DNC Registry, the default) or a state's own list,"
        " 'state:TX', 'state:FL', ... (see `leadflow compliance rules STATE`)",
    )
    di.add_argument("--add", action="store_true", help="a change file (',A' add / ',D' delete per line)")
    di.set_defaults(func=handler(f"{LISTS}:dnc_import"))

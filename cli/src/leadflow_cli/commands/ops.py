"""Everyday operations over AdminService: status, queues, review, errors, leads, calls, limits,
emergency mode and the admin audit log. Each prints a table, or the service's answer with --json."""

from __future__ import annotations

import argparse
import json

from leadflow.v1 import admin_pb2, dispatcher_pb2
from leadflow_cli.connections import actor, admin, dispatcher
from leadflow_cli.tables import print_json, table
from leadflow_core.settings import CommonSettings


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _queue_rows(reply: admin_pb2.GetQueueStatusResponse) -> str:
    return table(
        [
            (
                q.queue,
                q.depth,
                q.delayed,
                q.in_flight,
                q.outbox_pending,
                q.dead_letters_open,
                _age(q.oldest_age_seconds),
                f"paused: {q.paused_reason}" if q.paused else "running",
            )
            for q in reply.queues
        ],
        ("QUEUE", "DEPTH", "DELAYED", "IN FLIGHT", "OUTBOX", "DEAD", "OLDEST", "STATE"),
    )


def status(args: argparse.Namespace) -> int:
    stub = admin(CommonSettings())
    health = stub.GetSystemHealth(admin_pb2.GetSystemHealthRequest())
    queues = stub.GetQueueStatus(admin_pb2.GetQueueStatusRequest())
    if args.json:
        from google.protobuf.json_format import MessageToDict

        print(
            json.dumps(
                {"health": MessageToDict(health), "queues": MessageToDict(queues)}, indent=2, sort_keys=True
            )
        )
        return 0 if health.healthy else 1
    print(
        table(
            [
                (c.name, "ok" if c.healthy else "DOWN", c.version, c.address, c.detail[:70])
                for c in health.components
            ],
            ("COMPONENT", "STATE", "VERSION", "ADDRESS", "DETAIL"),
        )
    )
    print()
    print(_queue_rows(queues))
    return 0 if health.healthy else 1


def queues_list(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).GetQueueStatus(admin_pb2.GetQueueStatusRequest(queue=args.queue))
    if args.json:
        print_json(reply)
    else:
        print(_queue_rows(reply))
    return 0


def queues_pause(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).PauseQueues(
        admin_pb2.PauseQueuesRequest(queue=args.queue, reason=args.reason), metadata=actor()
    )
    print_json(reply) if args.json else print("paused: " + (", ".join(reply.paused) or "none"))
    return 0


def queues_resume(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).ResumeQueues(
        admin_pb2.ResumeQueuesRequest(queue=args.queue, reason=args.reason), metadata=actor()
    )
    print_json(reply) if args.json else print("paused: " + (", ".join(reply.paused) or "none"))
    return 0


def _review_rows(items: list[admin_pb2.ReviewItem]) -> str:
    return table(
        [
            (
                i.tenant,
                i.lead_id,
                i.source,
                i.state,
                ",".join(i.reasons),
                i.created_at.ToDatetime().isoformat(timespec="seconds") + "Z",
                i.decided_by.split(" ")[0],
            )
            for i in items
        ],
        ("TENANT", "LEAD", "SOURCE", "STATE", "REASONS", "RECEIVED", "DECIDED BY"),
    )


def review_list(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).ListReviews(
        admin_pb2.ListReviewsRequest(tenant=args.tenant, state=args.state, limit=args.limit)
    )
    if args.json:
        print_json(reply)
    elif not reply.items:
        print("nothing to review")
    else:
        print(_review_rows(list(reply.items)))
    return 0


def _decide(args: argparse.Namespace, approve: bool) -> int:
    item = admin(CommonSettings()).DecideReview(
        admin_pb2.DecideReviewRequest(
            tenant=args.tenant,
            lead_id=args.lead_id,
            approve=approve,
            reason=args.reason,
            state=getattr(args, "state", "") or "",
        ),
        metadata=actor(),
    )
    print_json(item) if args.json else print(_review_rows([item]))
    return 0


def review_approve(args: argparse.Namespace) -> int:
    return _decide(args, True)


def review_reject(args: argparse.Namespace) -> int:
    return _decide(args, False)


def errors_list(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).GetErrorStats(
        admin_pb2.GetErrorStatsRequest(tenant=args.tenant, window_seconds=args.window)
    )
    if args.json:
        print_json(reply)
        return 0
    print(
        table(
            [(e.tenant, e.error_class, e.queue, e.source, e.count, e.open) for e in reply.stats],
            ("TENANT", "CLASS", "QUEUE", "SOURCE", "COUNT", "OPEN"),
        )
    )
    print(f"total {reply.total} in the last {args.window or 3600}s")
    return 0


def errors_resolve(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).ResolveError(
        admin_pb2.ResolveErrorRequest(
            tenant=args.tenant, dead_letter_id=args.dead_letter_id, reason=args.reason
        ),
        metadata=actor(),
    )
    print_json(reply) if args.json else print(f"{args.dead_letter_id}: {reply.state}")
    return 0


def leads_search(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).SearchLeads(
        admin_pb2.SearchLeadsRequest(
            tenant=args.tenant, phone=args.phone, email=args.email, lead_id=args.id, limit=args.limit
        )
    )
    if args.json:
        print_json(reply)
    elif not reply.leads:
        print("no leads found")
    else:
        print(
            table(
                [
                    (
                        lead.lead_id,
                        lead.source,
                        lead.urgency,
                        lead.dial_state.removeprefix("DIAL_STATE_").lower(),
                        lead.received_at.ToDatetime().isoformat(timespec="seconds") + "Z",
                        lead.phone,
                        lead.email,
                    )
                    for lead in reply.leads
                ],
                ("LEAD", "SOURCE", "URGENCY", "DIAL", "RECEIVED", "PHONE", "EMAIL"),
            )
        )
    return 0


def leads_timeline(args: argparse.Namespace) -> int:
    reply = dispatcher(CommonSettings()).GetTimeline(
        dispatcher_pb2.GetTimelineRequest(tenant=args.tenant, lead_id=args.lead_id)
    )
    if args.json:
        print_json(reply)
        return 0
    print(
        f"dial state: {dispatcher_pb2.DialState.Name(reply.dial_state).removeprefix('DIAL_STATE_').lower()}"
    )
    print(
        table(
            [
                (e.at.ToDatetime().isoformat(timespec="milliseconds") + "Z", e.kind, e.detail_json)
                for e in reply.events
            ],
            ("AT", "EVENT", "DETAIL"),
        )
    )
    return 0


def leads_stats(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).GetLeadStats(
        admin_pb2.GetLeadStatsRequest(tenant=args.tenant, window_seconds=args.window)
    )
    if args.json:
        print_json(reply)
        return 0
    print(
        table(
            [
                (
                    s.tenant,
                    s.source,
                    s.received,
                    s.stored,
                    s.duplicates,
                    s.deferred,
                    s.blocked,
                    ", ".join(f"{k}={v}" for k, v in sorted(s.blocked_by_reason.items())),
                )
                for s in reply.stats
            ],
            ("TENANT", "SOURCE", "RECEIVED", "STORED", "DUPLICATES", "DEFERRED", "BLOCKED", "BLOCKED BY"),
        )
    )
    return 0


def calls(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).GetCallStats(
        admin_pb2.GetCallStatsRequest(tenant=args.tenant, window_seconds=args.window)
    )
    if args.json:
        print_json(reply)
        return 0
    print(
        table(
            [
                (
                    s.tenant,
                    s.outcome,
                    s.placed,
                    s.answered,
                    s.total_duration_seconds,
                    f"{s.mean_duration_seconds:.1f}",
                    s.cost_usd,
                )
                for s in reply.stats
            ],
            ("TENANT", "OUTCOME", "PLACED", "ANSWERED", "SECONDS", "MEAN S", "COST USD"),
        )
    )
    return 0


def limits(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).GetTenantLimits(admin_pb2.GetTenantLimitsRequest(tenant=args.tenant))
    if args.json:
        print_json(reply)
        return 0
    print(
        table(
            [
                (
                    t.tenant,
                    "paused" if t.paused else "active",
                    f"{t.calls_last_minute}/{t.calls_per_minute}",
                    f"{t.calls_last_hour}/{t.calls_per_hour}",
                    f"{t.calls_today}/{t.calls_per_day}",
                    f"{t.active_calls}/{t.concurrent_calls}",
                    f"{t.spend_today_usd or '0'}/{t.daily_budget_usd or '-'}",
                    f"{t.budget_used_ratio:.0%}",
                )
                for t in reply.tenants
            ],
            ("TENANT", "STATE", "MINUTE", "HOUR", "TODAY", "ACTIVE", "SPEND USD", "BUDGET USED"),
        )
    )
    return 0


def tenant_pause(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).SetTenantCallsPaused(
        admin_pb2.SetTenantCallsPausedRequest(tenant=args.tenant, paused=not args.resume, reason=args.reason),
        metadata=actor(),
    )
    print_json(reply) if args.json else print(f"{args.tenant}: {'paused' if reply.paused else 'active'}")
    return 0


def emergency(args: argparse.Namespace) -> int:
    on = args.emergency_command == "on"
    reply = admin(CommonSettings()).SetEmergencyMode(
        admin_pb2.SetEmergencyModeRequest(
            tenant=args.tenant, on=on, duration_seconds=getattr(args, "duration", 0) or 0, reason=args.reason
        ),
        metadata=actor(),
    )
    if args.json:
        print_json(reply)
    elif on:
        until = reply.until.ToDatetime().isoformat()
        print(f"emergency mode on for {args.tenant or 'every tenant'} until {until}Z")
    else:
        print(f"emergency mode off for {args.tenant or 'every tenant'}")
    return 0


def audit(args: argparse.Namespace) -> int:
    reply = admin(CommonSettings()).ListAdminAudit(
        admin_pb2.ListAdminAuditRequest(tenant=args.tenant, limit=args.limit)
    )
    if args.json:
        print_json(reply)
        return 0
    print(
        table(
            [
                (
                    e.at.ToDatetime().isoformat(timespec="seconds") + "Z",
                    e.actor,
                    e.action,
                    e.target,
                    e.tenant,
                    e.reason,
                )
                for e in reply.entries
            ],
            ("AT", "ACTOR", "ACTION", "TARGET", "TENANT", "REASON"),
        )
    )
    return 0

"""The Dramatiq actors. Importing this module imports `broker` first, which sets the broker.

Names come from `leadflow_core.queues`. One `dial` actor serves every `dial.<urgency>` queue
(a message names its actor, and the worker consumes the queues it is told to); urgency is kept
apart by queue, and workers give the urgent queues threads of their own.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage

from leadflow_core import queues
from leadflow_enrichment import broker as _broker
from leadflow_enrichment import jobs
from leadflow_enrichment.context import get_context
from leadflow_enrichment.handling import JobInfo, run_job

# Retries are decided by the actors (see handling); Dramatiq's Retries middleware only
# re-queues with the delay they ask for.


@dramatiq.actor(actor_name=queues.ENRICH_ACTOR, queue_name=queues.ENRICH)
def enrich(tenant: str, lead_id: str) -> None:
    run_job(
        get_context(),
        JobInfo("enrich", queues.ENRICH, tenant, lead_id),
        lambda i: jobs.enrich(get_context(), i),
    )


@dramatiq.actor(actor_name=queues.CRM_SYNC_ACTOR, queue_name=queues.CRM_SYNC)
def crm_sync(tenant: str, lead_id: str) -> None:
    run_job(
        get_context(),
        JobInfo("crm_sync", queues.CRM_SYNC, tenant, lead_id),
        lambda i: jobs.crm_sync(get_context(), i),
    )


@dramatiq.actor(
    actor_name=queues.DIAL_ACTOR,
    queue_name=queues.DIAL_QUEUES[0],
    time_limit=int(_broker.settings.dial_time_limit_seconds * 1000),
)
def dial(tenant: str, lead_id: str, attempt: int) -> None:
    message = CurrentMessage.get_current_message()
    queue = message.queue_name.removesuffix(".DQ") if message is not None else queues.DIAL_QUEUES[0]
    run_job(
        get_context(),
        JobInfo("dial", queue, tenant, lead_id, attempt=int(attempt)),
        lambda i: jobs.dial(get_context(), i),
    )


@dramatiq.actor(actor_name=queues.CALL_STATUS_ACTOR, queue_name=queues.CALL_STATUS)
def call_status(
    tenant: str,
    lead_id: str,
    attempt_id: str,
    provider: str,
    provider_call_id: str,
    purpose: str = "status",
    ended_at: float = 0.0,
    attempt: int = 1,
) -> None:
    """`purpose` "status": the final status of a call whose callbacks were lost; "price": the
    price of a call that ended (at `ended_at`, epoch seconds) without one."""
    info = JobInfo(
        "call_price" if purpose == "price" else "call_status",
        queues.CALL_STATUS,
        tenant,
        lead_id,
        attempt=int(attempt),
        extra={
            "attempt_id": attempt_id,
            "provider": provider,
            "provider_call_id": provider_call_id,
            "ended_at": ended_at,
        },
    )
    body = jobs.call_price if purpose == "price" else jobs.call_status
    run_job(get_context(), info, lambda i: body(get_context(), i))

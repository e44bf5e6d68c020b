"""Dramatiq messages built by name: the dispatcher produces jobs without importing the workers.

Queue and actor names come from `leadflow_core.queues`; every message carries the request id
(option `request_id`) so the workers' logs follow the lead, and the outbox job id (`job_id`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis, dq_name

from leadflow_core import queues


@dataclass(frozen=True)
class JobSpec:
    """What the outbox knows about one job; enough to build its message."""

    job_id: str
    tenant: str
    lead_id: str
    kind: str
    attempt: int
    queue: str
    request_id: str
    payload: dict[str, Any]


ACTORS = {
    "enrich": queues.ENRICH_ACTOR,
    "crm_sync": queues.CRM_SYNC_ACTOR,
    "dial": queues.DIAL_ACTOR,
    "call_status": queues.CALL_STATUS_ACTOR,
    # The same actor, asked for the provider's price of a call that ended without one.
    "call_price": queues.CALL_STATUS_ACTOR,
}


def make_broker(redis_url: str, namespace: str, heartbeat_timeout_ms: int = 20_000) -> RedisBroker:
    """A producer-side broker; never installed as Dramatiq's global broker. Its heartbeat
    timeout is the workers': Dramatiq's maintenance (which any enqueue may run) and ours agree
    on when a worker is dead."""
    client = redis.Redis.from_url(redis_url, socket_timeout=3.0, socket_connect_timeout=3.0)
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        client=client, namespace=namespace, middleware=[], heartbeat_timeout=heartbeat_timeout_ms
    )
    for queue in queues.ALL_QUEUES:
        broker.declare_queue(queue)
    return broker


def build_message(job: JobSpec) -> dramatiq.Message[Any]:
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = {}
    if job.kind == "dial":
        args = (job.tenant, job.lead_id, job.attempt)
    elif job.kind in ("call_status", "call_price"):
        args = (
            job.tenant,
            job.lead_id,
            str(job.payload.get("attempt_id", "")),
            str(job.payload.get("provider", "")),
            str(job.payload.get("provider_call_id", "")),
        )
        # The attempt names the job row whose lease a waiting worker extends.
        kwargs = {"attempt": job.attempt}
        if job.kind == "call_price":
            kwargs |= {"purpose": "price", "ended_at": float(job.payload.get("ended_at", 0.0))}
    else:
        args = (job.tenant, job.lead_id)
    options: dict[str, Any] = {"request_id": job.request_id, "job_id": job.job_id}
    if job.payload.get(queues.FRESH_CONFIG_OPTION):
        options[queues.FRESH_CONFIG_OPTION] = True
    return dramatiq.Message(
        queue_name=job.queue,
        actor_name=ACTORS[job.kind],
        args=args,
        kwargs=kwargs,
        options=options,
    )


def enqueue(broker: RedisBroker, job: JobSpec, delay_seconds: float) -> tuple[str, str]:
    """Enqueue the job's message; returns (the Redis queue it went to, its redis message id)."""
    message = build_message(job)
    delay_ms = int(delay_seconds * 1000)
    sent = broker.enqueue(message, delay=delay_ms if delay_ms > 0 else None)
    return sent.queue_name, str(sent.options["redis_message_id"])


def enqueue_many(
    broker: RedisBroker, jobs: Sequence[tuple[JobSpec, float]]
) -> list[tuple[str, str] | BaseException]:
    """Enqueue many jobs in ONE Redis round trip: each message goes through Dramatiq's own
    enqueue script, as `broker.enqueue` would send it, but all in one pipeline. Per job:
    (the Redis queue it went to, its redis message id), or the error that refused it."""
    if not jobs:
        return []
    script = broker.scripts["dispatch"]
    pipe = broker.client.pipeline(transaction=False)
    sent: list[tuple[str, str]] = []
    for job, delay_seconds in jobs:
        message = build_message(job)
        mid = str(uuid.uuid4())
        options: dict[str, Any] = {"redis_message_id": mid}
        queue = message.queue_name
        delay_ms = int(delay_seconds * 1000)
        if delay_ms > 0:
            queue = dq_name(queue)
            options["eta"] = current_millis() + delay_ms
        message = message.copy(queue_name=queue, options={**message.options, **options})
        args = [
            "enqueue",
            current_millis(),
            queue,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            broker._should_do_maintenance("enqueue"),
            broker._max_unpack_size(),  # type: ignore[no-untyped-call]
            mid,
            message.encode(),
        ]
        script(keys=[broker.namespace], args=args, client=pipe)
        sent.append((queue, mid))
    try:
        results = pipe.execute(raise_on_error=False)
    except Exception as err:  # the connection itself failed: nothing is known to be sent
        return [err for _ in jobs]
    return [r if isinstance(r, BaseException) else where for r, where in zip(results, sent, strict=True)]


def dead_workers(broker: RedisBroker) -> list[str]:
    """Broker ids in Dramatiq's heartbeat set silent for longer than the heartbeat timeout."""
    cutoff = current_millis() - broker.heartbeat_timeout
    return [
        m.decode() if isinstance(m, bytes) else str(m)
        for m in broker.client.zrangebyscore(f"{broker.namespace}:__heartbeats__", 0, cutoff)
    ]


def recover_dead_workers(broker: RedisBroker) -> list[str]:
    """Put the messages dead workers had fetched (running or prefetched, delayed ones too) back
    on their queues, now rather than whenever a worker's fetch happens to draw Dramatiq's
    maintenance (a 1-in-1000 chance): the same maintenance step, run on every queue. The
    messages keep their ids, so the outbox's leases still recognise them. Returns the dead ids."""
    dead = dead_workers(broker)
    if not dead:
        return []
    script = broker.scripts["dispatch"]
    pipe = broker.client.pipeline(transaction=False)
    for queue in queues.ALL_QUEUES:
        for name in (queue, dq_name(queue)):
            # "qsize" only reads; do_maintenance=1 makes the script run its maintenance first.
            args = [
                "qsize",
                current_millis(),
                name,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                1,
                broker._max_unpack_size(),  # type: ignore[no-untyped-call]
            ]
            script(keys=[broker.namespace], args=args, client=pipe)
    pipe.execute()
    return dead


# A delayed message still in its delay queue this long after its eta is stranded (see below).
DELAYED_OVERDUE_MS = 30_000


def message_present(
    broker: RedisBroker, refs: list[tuple[str, str]], now_ms: int | None = None
) -> list[bool]:
    """Whether each (queue, redis message id) still has its body in Redis: waiting, delayed or
    held by a worker. False means Redis lost it (restart without persistence, flush), or it is
    a delayed message well past its eta: a worker moves a delayed message to its queue at the
    eta, but one that lost its Redis connection meanwhile forgets the delayed messages it held
    (Dramatiq drops its delay queue on a connection error) while they stay acked to it, alive,
    so no maintenance ever gives them back."""
    if not refs:
        return []
    now_ms = current_millis() if now_ms is None else now_ms
    pipe = broker.client.pipeline()
    for queue, mid in refs:
        key = f"{broker.namespace}:{queue}.msgs"
        if queue.endswith(".DQ"):
            pipe.hget(key, mid)
        else:
            pipe.hexists(key, mid)
    present: list[bool] = []
    for (queue, _), found in zip(refs, pipe.execute(), strict=True):
        if queue.endswith(".DQ") and found:
            eta = dramatiq.Message.decode(found).options.get("eta")
            present.append(not isinstance(eta, int | float) or eta + DELAYED_OVERDUE_MS > now_ms)
        else:
            present.append(bool(found))
    return present

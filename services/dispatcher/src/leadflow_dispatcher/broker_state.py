"""What Dramatiq's Redis holds per queue, read the way its Redis broker lays it out (2.x):

- `<ns>:<queue>`       list of message ids no worker has taken (the backlog; the HPA's input);
- `<ns>:<queue>.msgs`  hash id -> body (used here for the head message's age);
- `<ns>:<queue>.DQ`    the delay queue, until a worker prefetches (then held in its memory);
- `<ns>:<queue>.XQ`    sorted set of Dramatiq's own dead letters;
- `<ns>:__heartbeats__` sorted set worker id -> last heartbeat (ms);
- `<ns>:__acks__.<worker>.<queue>` set of message ids that worker took and has not acked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from dramatiq import Message

from leadflow_core import queues

# Dramatiq's default: a worker silent this long is considered dead.
HEARTBEAT_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class QueueSnapshot:
    queue: str
    depth: int
    delayed: int
    in_flight: int
    dead: int
    oldest_age_seconds: float


def live_workers(client: redis.Redis, namespace: str) -> list[str]:
    now_ms = time.time() * 1000
    raw = client.zrangebyscore(f"{namespace}:__heartbeats__", now_ms - HEARTBEAT_TIMEOUT_MS, "+inf")
    return [w.decode() if isinstance(w, bytes) else str(w) for w in raw]


def _age(client: redis.Redis, key: str, head: bytes | None, now_ms: float) -> float:
    if head is None:
        return 0.0
    body = client.hget(f"{key}.msgs", head)
    if not isinstance(body, bytes):
        return 0.0
    message = Message.decode(body)
    # A delayed message only starts waiting at its eta.
    stamp = float(message.options.get("eta") or message.message_timestamp)
    return max(0.0, (now_ms - stamp) / 1000)


def snapshot(
    client: redis.Redis, namespace: str, names: tuple[str, ...] = queues.ALL_QUEUES
) -> list[QueueSnapshot]:
    """One pipeline per queue; raises redis.RedisError when Redis cannot be read."""
    workers = live_workers(client, namespace)
    now_ms = time.time() * 1000
    out = []
    for queue in names:
        key = f"{namespace}:{queue}"
        pipe = client.pipeline()
        pipe.llen(key)
        pipe.lindex(key, 0)
        pipe.llen(f"{key}.DQ")
        pipe.zcard(f"{key}.XQ")
        for worker in workers:
            pipe.scard(f"{namespace}:__acks__.{worker}.{queue}")
        for worker in workers:
            # Delayed messages a worker prefetched wait in its memory until their eta.
            pipe.scard(f"{namespace}:__acks__.{worker}.{queue}.DQ")
        depth, head, delayed, dead, *acks = pipe.execute()
        taken, held = acks[: len(workers)], acks[len(workers) :]
        out.append(
            QueueSnapshot(
                queue=queue,
                depth=int(depth),
                delayed=int(delayed) + sum(int(a) for a in held),
                in_flight=sum(int(a) for a in taken),
                dead=int(dead),
                oldest_age_seconds=_age(client, key, head, now_ms),
            )
        )
    return out

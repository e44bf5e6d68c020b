"""The sweeper's view of a message in Redis (real Redis): waiting or delayed is present; gone,
or delayed and still in its delay queue well past its eta (stranded in a live worker), is not."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

from leadflow_dispatcher import queueing
from leadflow_dispatcher.queueing import DELAYED_OVERDUE_MS, JobSpec


@pytest.fixture
def broker(redis_url: str, redis_prefix: str) -> Iterator[RedisBroker]:
    b = queueing.make_broker(redis_url, f"{redis_prefix}present-{uuid.uuid4().hex[:6]}")
    yield b
    keys = list(b.client.scan_iter(match=f"{b.namespace}:*"))
    if keys:
        b.client.delete(*keys)
    b.client.close()


def _job(kind: str = "call_price") -> JobSpec:
    return JobSpec(
        job_id=uuid.uuid4().hex,
        tenant="t",
        lead_id=uuid.uuid4().hex,
        kind=kind,
        attempt=1,
        queue="call_status",
        request_id="",
        payload={"provider_call_id": "CA" + "0" * 32, "ended_at": 0.0},
    )


def test_waiting_and_delayed_messages_are_present_until_a_delayed_one_is_overdue(broker: RedisBroker) -> None:
    waiting = queueing.enqueue(broker, _job("call_status"), 0)
    delayed = queueing.enqueue(broker, _job(), 5.0)
    assert not waiting[0].endswith(".DQ")
    assert delayed[0].endswith(".DQ")
    now = current_millis()
    assert queueing.message_present(broker, [waiting, delayed], now) == [True, True]
    # Past its eta by less than the allowance: a worker is about to move it.
    just_due = now + 5_000 + DELAYED_OVERDUE_MS // 2
    assert queueing.message_present(broker, [waiting, delayed], just_due) == [True, True]
    # Well past it and still delayed: stranded, to be sent again. A waiting one stays present.
    overdue = now + 5_000 + DELAYED_OVERDUE_MS + 1_000
    assert queueing.message_present(broker, [waiting, delayed], overdue) == [True, False]


def test_a_message_redis_lost_is_not_present(broker: RedisBroker) -> None:
    queue, mid = queueing.enqueue(broker, _job("call_status"), 0)
    broker.client.hdel(f"{broker.namespace}:{queue}.msgs", mid)
    assert queueing.message_present(broker, [(queue, mid), (queue + ".DQ", mid)]) == [False, False]

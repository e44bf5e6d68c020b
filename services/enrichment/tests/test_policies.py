"""Pure retry rules and the Redis circuit breaker."""

from __future__ import annotations

import random
import uuid

import grpc
import pytest
import redis

from leadflow.v1 import batch_pb2
from leadflow_enrichment.breaker import BreakerConfig, CircuitBreaker
from leadflow_enrichment.context import ItemRpcError
from leadflow_enrichment.failures import ErrorClass
from leadflow_enrichment.handling import classify
from leadflow_enrichment.limits import LimitBusy, Limiters, ProviderLimits
from leadflow_enrichment.retry_policy import Action, RetrySchedule, backoff_seconds, decide

SCHEDULE = RetrySchedule(max_retries=4, base_seconds=2.0, max_seconds=30.0, system_max_retries=2)


def test_each_class_decides_its_own_fate() -> None:
    rng = random.Random(1)
    assert decide(ErrorClass.VALIDATION, 1, SCHEDULE, rng=rng).action is Action.DEAD_LETTER
    assert decide(ErrorClass.EXTERNAL, 1, SCHEDULE, rng=rng).action is Action.DEAD_LETTER
    assert decide(ErrorClass.CONSENT, 1, SCHEDULE, rng=rng).action is Action.STOP
    assert decide(ErrorClass.BUSINESS, 1, SCHEDULE, rng=rng).action is Action.STOP
    assert decide(ErrorClass.TEMPORARY, 4, SCHEDULE, rng=rng).action is Action.RETRY
    assert decide(ErrorClass.TEMPORARY, 5, SCHEDULE, rng=rng).action is Action.DEAD_LETTER
    assert decide(ErrorClass.SYSTEM, 2, SCHEDULE, rng=rng).action is Action.RETRY
    assert decide(ErrorClass.SYSTEM, 3, SCHEDULE, rng=rng).action is Action.DEAD_LETTER


def test_backoff_grows_is_jittered_and_bounded() -> None:
    rng = random.Random(7)
    for failures in range(1, 12):
        ceiling = min(30.0, 2.0 * 2 ** (failures - 1))
        delays = [backoff_seconds(failures, SCHEDULE, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_retry_after_is_honoured() -> None:
    outcome = decide(ErrorClass.RATE_LIMITED, 1, SCHEDULE, retry_after=17.0, rng=random.Random(3))
    assert outcome.action is Action.RETRY
    assert outcome.delay_seconds == 17.0


def test_tenant_options_override_the_schedule() -> None:
    s = RetrySchedule.from_options({"max_retries": "9", "retry_base_seconds": "oops"}, SCHEDULE)
    assert s.max_retries == 9
    assert s.base_seconds == SCHEDULE.base_seconds


def test_breaker_opens_per_tenant_and_provider_then_probes(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    config = BreakerConfig(threshold=3, window_seconds=30, open_seconds=0.2, probe_poll_seconds=0.1)
    base = f"{redis_prefix}breaker-test:{uuid.uuid4().hex}"
    acme_crm = CircuitBreaker(client, f"{base}:acme:hubspot", config)
    acme_dialer = CircuitBreaker(client, f"{base}:acme:twilio", config)
    other_crm = CircuitBreaker(client, f"{base}:other:hubspot", config)
    assert not acme_crm.record_failure()
    assert not acme_crm.record_failure()
    assert acme_crm.record_failure()
    assert acme_crm.wait_seconds() > 0
    # Only that tenant's calls to that provider are held.
    assert acme_dialer.wait_seconds() == 0
    assert other_crm.wait_seconds() == 0

    def probe_allowed() -> bool:
        return acme_crm.wait_seconds() == 0

    from leadflow_core.testing import wait_for

    wait_for(probe_allowed, timeout=5, what="the half-open probe")
    # One probe at a time; the others look again soon, not a whole open period later.
    assert 0 < acme_crm.wait_seconds() <= 0.1
    acme_crm.record_success()
    assert acme_crm.wait_seconds() == 0
    assert acme_crm.wait_seconds() == 0


def test_provider_limits_hold_a_burst(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    limiters = Limiters(client, f"{redis_prefix}limits-test:{uuid.uuid4().hex}", ttl_seconds=30)
    one_at_a_time = ProviderLimits(concurrency=1)
    with limiters.slot("acme", "twilio", one_at_a_time):
        with pytest.raises(LimitBusy), limiters.slot("acme", "twilio", one_at_a_time):
            pass
        # Another tenant's account has its own quota.
        with limiters.slot("other", "twilio", one_at_a_time):
            pass
    with limiters.slot("acme", "twilio", one_at_a_time):
        pass
    two_per_second = ProviderLimits(rate_per_second=2)
    granted = 0
    for _ in range(5):
        try:
            with limiters.slot("acme", "hubspot", two_per_second):
                granted += 1
        except LimitBusy:
            pass
    # Within one second window at most 2 (the window may roll over once during the loop).
    assert 2 <= granted <= 4


def test_tenant_options_override_provider_limits() -> None:
    limits = ProviderLimits.resolve("twilio", {"concurrency": "3"}, {"twilio": 10}, {"twilio": 1})
    assert limits == ProviderLimits(concurrency=3, rate_per_second=1)


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED],
)
def test_a_failure_of_our_own_services_is_retried_never_an_answer(code: grpc.StatusCode) -> None:
    """Compliance or the dispatcher failing (down, slow, an older version mid-upgrade) is a
    temporary error the job retries; it never becomes a decision or another path."""
    error_class, _, _ = classify(ItemRpcError(batch_pb2.ItemError(code=code.value[0], message="x")))
    assert error_class is ErrorClass.TEMPORARY

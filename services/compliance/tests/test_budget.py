"""The daily budget with real money: rate-card estimates, settled provider prices, the tenant's
own day (DST included), and PostgreSQL as the record Redis's totals are rebuilt from."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import redis

from leadflow.v1 import (
    compliance_pb2,
    compliance_pb2_grpc,
    decision_pb2,
    lead_pb2,
    tenants_pb2,
    tenants_pb2_grpc,
)
from leadflow_core.grpc_clients import channel
from leadflow_core.testing import ServiceProcess, python_module, service_env
from leadflow_core.timestamps import from_proto, to_proto
from services.compliance.tests.conftest import make_tenant

# Europe/London leaves summer time at 01:00 UTC on Sunday 25 October 2026: the tenant's day of
# the 24th ends at 23:00 UTC, and the 25th lasts 25 hours, to 00:00 UTC on the 26th.
SATURDAY_EVENING = datetime(2026, 10, 24, 21, 0, tzinfo=UTC)  # 22:00 in London, 14:00 in California
LONDON_MIDNIGHT = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)
NEXT_LONDON_MIDNIGHT = datetime(2026, 10, 26, 0, 0, tzinfo=UTC)
# When the session's server (on the real clock) is asked to gate a call: a Californian afternoon.
CALIFORNIA_AFTERNOON = datetime(2026, 11, 18, 22, 0, tzinfo=UTC)
# US numbers parse as fixed_line_or_mobile; this card prices them at 0.10 a minute, 2 minutes.
RATE_CARD = {
    "defaultPerMinuteUsd": "0.0140",
    "estimateMinutes": 2,
    "rates": [
        {"country": "US", "lineType": "fixed_line_or_mobile", "perMinuteUsd": "0.1000"},
        {"country": "CA", "perMinuteUsd": "0.0200"},
    ],
}
ESTIMATE = Decimal("0.20")


def _lead(tenant: str, n: int) -> lead_pb2.Lead:
    return lead_pb2.Lead(
        lead_id=uuid.uuid4().hex,
        tenant=tenant,
        source=lead_pb2.SOURCE_API,
        contact=lead_pb2.Contact(phone=lead_pb2.Phone(e164=f"+1415555{1000 + n}")),
        consent=lead_pb2.ConsentEvidence(
            granted=True,
            disclosure_text="I agree to be called",
            consented_at=to_proto(datetime(2026, 10, 1, tzinfo=UTC)),
            seller=tenant,
            form_submission_id="sub-" + uuid.uuid4().hex[:8],
        ),
    )


Stubs = tuple[compliance_pb2_grpc.ComplianceServiceStub, tenants_pb2_grpc.TenantAdminServiceStub]


class Tenant:
    """One London tenant's calls through a real compliance process, each to its own number."""

    def __init__(self, stubs: Stubs, daily_usd: str, gate_at: datetime | None = None) -> None:
        self.compliance, self.admin = stubs
        # None: the gate decides on the service's clock.
        self.gate_at = gate_at
        self.name = make_tenant(
            self.admin,
            timezone="Europe/London",
            limits={"callsPerMinute": 0, "callsPerHour": 0, "callsPerDay": 0, "concurrentCalls": 0},
            budget={"dailyUsd": daily_usd, "rateCard": RATE_CARD},
        ).name
        self.n = 0

    def reserve(self) -> compliance_pb2.ReserveCallResponse:
        self.n += 1
        request = compliance_pb2.ReserveCallRequest(lead=_lead(self.name, self.n), attempt_id=f"a{self.n}")
        if self.gate_at is not None:
            request.evaluate_at.CopyFrom(to_proto(self.gate_at))
        return self.compliance.ReserveCall(request)

    def settle(self, reservation_id: str, twilio_price: str) -> None:
        self.compliance.SettleCall(
            compliance_pb2.SettleCallRequest(
                tenant=self.name,
                reservation_id=reservation_id,
                outcome=compliance_pb2.CALL_OUTCOME_COMPLETED,
                actual_cost_usd=twilio_price,
            )
        )

    def usage(self) -> tuple[int, Decimal, int]:
        u = self.admin.GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=self.name)).usage
        return u.calls_today, Decimal(u.spend_today_usd), u.active_calls


def rule_ids(decision: decision_pb2.Decision) -> set[str]:
    return {r.rule_id for r in decision.reasons}


@contextlib.contextmanager
def compliance_at(
    instant: datetime, database_url: str, redis_url: str, redis_prefix: str, workdir: Path
) -> Iterator[Stubs]:
    """A compliance process whose clock (the test hook LEADFLOW_CLOCK_OFFSET_SECONDS) starts at
    `instant`, on the session's PostgreSQL and Redis."""
    offset = (instant - datetime.now(UTC)).total_seconds()
    env = service_env(
        database_url,
        redis_url,
        redis_prefix,
        {"LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:0", "LEADFLOW_CLOCK_OFFSET_SECONDS": f"{offset:.3f}"},
    )
    workdir.mkdir()
    proc = ServiceProcess("compliance-clock", python_module("leadflow_compliance"), env, workdir)
    proc.start()
    ch = channel(proc.addr, default_timeout=30.0)
    try:
        yield compliance_pb2_grpc.ComplianceServiceStub(ch), tenants_pb2_grpc.TenantAdminServiceStub(ch)
    finally:
        ch.close()
        assert proc.stop() == 0, proc.tail()


def test_rate_card_prices_the_reservation_and_the_provider_price_settles_it(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    t = Tenant((compliance, admin), "100.00", CALIFORNIA_AFTERNOON)
    reply = t.reserve()
    assert reply.decision.action == decision_pb2.DIAL_ACTION_DIAL_NOW
    assert t.usage() == (1, ESTIMATE, 1)
    # Twilio reports what left the account as a negative decimal string.
    t.settle(reply.reservation_id, "-0.03400")
    assert t.usage() == (1, Decimal("0.03"), 0)  # usage shows cents
    # A settlement redelivered changes nothing.
    t.settle(reply.reservation_id, "-0.03400")
    assert t.usage() == (1, Decimal("0.03"), 0)


def test_a_call_settled_at_its_estimate_takes_the_providers_price_later_once(
    compliance: compliance_pb2_grpc.ComplianceServiceStub,
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
    redis_url: str,
    redis_prefix: str,
) -> None:
    t = Tenant((compliance, admin), "100.00", CALIFORNIA_AFTERNOON)
    reply = t.reserve()
    # The call ended; Twilio's callback had no price: the estimate stands for now.
    t.settle(reply.reservation_id, "")
    assert t.usage() == (1, ESTIMATE, 0)
    # The price, looked up later, replaces the estimate in the day's spend.
    t.settle(reply.reservation_id, "-0.05000")
    assert t.usage() == (1, Decimal("0.05"), 0)
    # Once: neither a redelivery nor a different later figure moves it again.
    t.settle(reply.reservation_id, "-0.05000")
    t.settle(reply.reservation_id, "-0.09000")
    assert t.usage() == (1, Decimal("0.05"), 0)
    # PostgreSQL holds the price too: a day rebuilt after Redis lost it agrees.
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.scan_iter(match=f"{redis_prefix}leadflow:acct:{t.name}:*"))
    assert t.usage() == (1, Decimal("0.05"), 0)


def test_a_settlement_retried_after_redis_failed_finishes_redis_part(
    compliance: compliance_pb2_grpc.ComplianceServiceStub,
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
    redis_url: str,
    redis_prefix: str,
) -> None:
    t = Tenant((compliance, admin), "100.00", CALIFORNIA_AFTERNOON)
    reply = t.reserve()
    t.settle(reply.reservation_id, "")
    assert t.usage() == (1, ESTIMATE, 0)
    # As if Redis had failed after PostgreSQL settled: Redis still holds the call's slot.
    client = redis.Redis.from_url(redis_url)
    acct = f"{redis_prefix}leadflow:acct:{t.name}"
    client.hset(f"{acct}:res:{reply.reservation_id}", "state", "held")
    client.zadd(f"{acct}:active", {reply.reservation_id: int(time.time() * 1000) + 600_000})
    assert t.usage() == (1, ESTIMATE, 1)
    # The dispatcher sends the settlement again: Redis's part is done, PostgreSQL's is not redone.
    t.settle(reply.reservation_id, "")
    assert t.usage() == (1, ESTIMATE, 0)
    # And the price that follows still moves the spend, once.
    t.settle(reply.reservation_id, "-0.05")
    assert t.usage() == (1, Decimal("0.05"), 0)


def test_budget_stops_dialing_until_the_tenants_midnight_across_a_dst_change(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    with compliance_at(SATURDAY_EVENING, database_url, redis_url, redis_prefix, tmp_path / "before") as stubs:
        t = Tenant(stubs, "1.00")
        settled = Decimal(0)
        # Each call holds 0.20 until Twilio's price (0.15) settles it: calls pass while the
        # settled spend plus one estimate fits in 1.00.
        while (reply := t.reserve()).decision.action == decision_pb2.DIAL_ACTION_DIAL_NOW:
            t.settle(reply.reservation_id, "-0.15000")
            settled += Decimal("0.15")
            assert settled < 2, "the budget never stopped dialing"
        assert settled == Decimal("0.90")  # a seventh 0.20 would pass 1.00
        assert reply.decision.action == decision_pb2.DIAL_ACTION_DEFER
        assert "tenant.limit.budget" in rule_ids(reply.decision)
        assert not reply.reservation_id
        # Not UTC midnight: London's, an hour earlier while summer time lasts.
        assert from_proto(reply.decision.not_before) == LONDON_MIDNIGHT
        assert t.usage() == (6, settled, 0)
    # The same tenant just after London's midnight: a fresh day.
    after_midnight = LONDON_MIDNIGHT + timedelta(seconds=30)
    with compliance_at(after_midnight, database_url, redis_url, redis_prefix, tmp_path / "after") as stubs:
        t.compliance, t.admin = stubs
        reply = t.reserve()
        assert reply.decision.action == decision_pb2.DIAL_ACTION_DIAL_NOW
        assert t.usage() == (1, ESTIMATE, 1)
        # The 25th lasts 25 hours: spent out, the tenant resumes at 00:00 UTC on the 26th.
        t.settle(reply.reservation_id, "-0.90")
        refused = t.reserve()
        assert "tenant.limit.budget" in rule_ids(refused.decision)
        assert from_proto(refused.decision.not_before) == NEXT_LONDON_MIDNIGHT


def test_redis_flushed_day_is_rebuilt_from_postgresql(
    compliance: compliance_pb2_grpc.ComplianceServiceStub,
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
    redis_url: str,
    redis_prefix: str,
) -> None:
    t = Tenant((compliance, admin), "1.00", CALIFORNIA_AFTERNOON)
    for _ in range(3):
        t.settle(t.reserve().reservation_id, "-0.15")
    held = t.reserve()  # placed, its price not known yet
    before = t.usage()
    assert before == (4, Decimal("0.65"), 1)
    client = redis.Redis.from_url(redis_url)
    lost = list(client.scan_iter(match=f"{redis_prefix}leadflow:acct:{t.name}:*"))
    assert lost
    client.delete(*lost)
    # Read back from PostgreSQL: the same calls and spend, the unsettled call still active.
    assert t.usage() == before
    # The held call settles against its rebuilt reservation: spend moves from estimate to price.
    t.settle(held.reservation_id, "-0.25")
    assert t.usage() == (4, Decimal("0.70"), 0)
    # The rebuilt total still enforces the budget: 0.70 + 0.20 fits, then 0.90 + 0.20 does not.
    assert t.reserve().decision.action == decision_pb2.DIAL_ACTION_DIAL_NOW
    assert "tenant.limit.budget" in rule_ids(t.reserve().decision)

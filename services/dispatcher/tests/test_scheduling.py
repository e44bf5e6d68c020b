"""Pure dial scheduling rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leadflow.v1 import decision_pb2, dispatcher_pb2
from leadflow_core.timestamps import to_proto
from leadflow_dispatcher import scheduling

NOW = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)


def test_dial_delay_tenant_over_deployment_over_default() -> None:
    assert scheduling.dial_delay_seconds("low", {}, {}) == 1800
    assert scheduling.dial_delay_seconds("low", {}, {"low": 5}) == 5
    assert scheduling.dial_delay_seconds("low", {"low": 1}, {"low": 5}) == 1
    assert scheduling.dial_delay_seconds("emergency", {}, {}) == 0


def test_plan_follows_the_decision() -> None:
    now_plan = scheduling.plan_dial(
        decision_pb2.Decision(action=decision_pb2.DIAL_ACTION_DIAL_NOW), False, NOW, 30
    )
    assert now_plan == scheduling.DialPlan(dispatcher_pb2.DIAL_STATE_SCHEDULED, NOW + timedelta(seconds=30))
    later = NOW + timedelta(hours=9)
    deferred = scheduling.plan_dial(
        decision_pb2.Decision(action=decision_pb2.DIAL_ACTION_DEFER, not_before=to_proto(later)),
        False,
        NOW,
        30,
    )
    assert deferred == scheduling.DialPlan(dispatcher_pb2.DIAL_STATE_DEFERRED, later)
    never = scheduling.plan_dial(decision_pb2.Decision(action=decision_pb2.DIAL_ACTION_NEVER), False, NOW, 0)
    assert never.due_at is None
    test_lead = scheduling.plan_dial(
        decision_pb2.Decision(action=decision_pb2.DIAL_ACTION_DIAL_NOW), True, NOW, 0
    )
    assert test_lead.state == dispatcher_pb2.DIAL_STATE_BLOCKED


def test_call_retries_within_policy() -> None:
    assert scheduling.next_call_attempt_at("busy", 1, 3, 60, NOW) == NOW + timedelta(seconds=60)
    assert scheduling.next_call_attempt_at("no-answer", 2, 3, 60, NOW) == NOW + timedelta(seconds=120)
    assert scheduling.next_call_attempt_at("busy", 3, 3, 60, NOW) is None
    assert scheduling.next_call_attempt_at("completed", 1, 3, 60, NOW) is None
    assert scheduling.next_call_attempt_at("failed", 1, 3, 60, NOW) is None


def test_defer_gap_grows_and_is_capped() -> None:
    assert scheduling.defer_gap(1) == timedelta(seconds=1)
    assert scheduling.defer_gap(4) == timedelta(seconds=8)
    assert scheduling.defer_gap(40) == timedelta(seconds=300)

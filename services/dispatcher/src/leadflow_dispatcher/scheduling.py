"""Pure rules for when work happens: dial delays, deferrals, call retries. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from leadflow.v1 import compliance_pb2, decision_pb2, dispatcher_pb2, lead_pb2
from leadflow_core.queues import DEFAULT_DIAL_DELAY_SECONDS

URGENCY_NAMES: Mapping[int, str] = {
    lead_pb2.URGENCY_EMERGENCY: "emergency",
    lead_pb2.URGENCY_HIGH: "high",
    lead_pb2.URGENCY_MEDIUM: "medium",
    lead_pb2.URGENCY_LOW: "low",
}
SOURCE_NAMES: Mapping[int, str] = {
    value: name.removeprefix("SOURCE_").lower() for name, value in lead_pb2.Source.items()
}

# Twilio's final call statuses; anything else is progress.
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# Statuses after which the person may be tried again (within the tenant's policy).
RETRYABLE_CALL_STATUSES = frozenset({"busy", "no-answer"})
CALL_OUTCOMES: Mapping[str, int] = {
    "completed": compliance_pb2.CALL_OUTCOME_COMPLETED,
    "busy": compliance_pb2.CALL_OUTCOME_BUSY,
    "no-answer": compliance_pb2.CALL_OUTCOME_NO_ANSWER,
    "failed": compliance_pb2.CALL_OUTCOME_FAILED,
    "canceled": compliance_pb2.CALL_OUTCOME_CANCELED,
}


def urgency_name(urgency: int) -> str:
    """Unspecified urgency dials as medium."""
    return URGENCY_NAMES.get(urgency, "medium")


def source_name(source: int) -> str:
    return SOURCE_NAMES.get(source, "unspecified")


def dial_delay_seconds(
    urgency: str, tenant_delays: Mapping[str, int], deployment_delays: Mapping[str, int]
) -> int:
    """The tenant's policy wins over the deployment's setting, which wins over the default."""
    if urgency in tenant_delays:
        return int(tenant_delays[urgency])
    if urgency in deployment_delays:
        return int(deployment_delays[urgency])
    return DEFAULT_DIAL_DELAY_SECONDS[urgency]


@dataclass(frozen=True)
class DialPlan:
    state: int  # dispatcher_pb2.DialState
    due_at: datetime | None  # when the dial job may run; None: never


def plan_dial(decision: decision_pb2.Decision, is_test: bool, now: datetime, delay_seconds: int) -> DialPlan:
    """What a fresh lead's dial looks like, from its compliance decision."""
    if is_test or decision.action in (decision_pb2.DIAL_ACTION_NEVER, decision_pb2.DIAL_ACTION_UNSPECIFIED):
        return DialPlan(dispatcher_pb2.DIAL_STATE_BLOCKED, None)
    earliest = now + timedelta(seconds=delay_seconds)
    if decision.action == decision_pb2.DIAL_ACTION_DEFER:
        not_before = (
            decision.not_before.ToDatetime(tzinfo=now.tzinfo) if decision.HasField("not_before") else now
        )
        return DialPlan(dispatcher_pb2.DIAL_STATE_DEFERRED, max(not_before, earliest))
    return DialPlan(dispatcher_pb2.DIAL_STATE_SCHEDULED, earliest)


def next_call_attempt_at(
    status: str, attempt: int, max_attempts: int, backoff_seconds: int, now: datetime
) -> datetime | None:
    """When to try a person again after a call ended with `status`; None: no further attempt.

    Compliance still decides at the gate (state caps, hours), so this only bounds our own retries.
    """
    if status not in RETRYABLE_CALL_STATUSES or attempt >= max(1, max_attempts):
        return None
    # Linear growth keeps a tenant's configured backoff meaningful: 1x, 2x, 3x ...
    return now + timedelta(seconds=backoff_seconds * attempt)


def defer_gap(tries: int) -> timedelta:
    """The least wait after the final gate refused a dial: 1 s, 2 s, 4 s ... up to 5 minutes."""
    return timedelta(seconds=min(300, 2 ** max(0, tries - 1)))

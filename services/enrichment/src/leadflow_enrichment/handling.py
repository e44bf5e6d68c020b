"""Around every job: classify its failure and retry, hold, dead-letter or stop accordingly.

A job acknowledges (returns) only once its effect or its dead letter is recorded by the
dispatcher; everything else re-queues the message through `dramatiq.Retry` with the delay its
error class calls for. Failures are counted in the message's own options, so the count
survives re-queueing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dramatiq
import grpc
from dramatiq.middleware import CurrentMessage

from leadflow.v1 import dispatcher_pb2
from leadflow_core import queues
from leadflow_core.clock import now as utcnow
from leadflow_core.logs import get_logger
from leadflow_core.pii import scrub
from leadflow_core.timestamps import to_proto
from leadflow_enrichment.context import WorkerContext
from leadflow_enrichment.failures import ErrorClass, ProviderError
from leadflow_enrichment.job_metrics import record_failure
from leadflow_enrichment.retry_policy import Action, RetrySchedule, decide

log = get_logger("leadflow.worker")

# gRPC codes of our own services that heal by themselves. A failure of compliance or the
# dispatcher is never an answer: UNIMPLEMENTED is a peer mid-upgrade (an older version), retried
# like any other outage, never a reason to take another path (no dial without a reservation).
_TRANSIENT_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNIMPLEMENTED,
}


class Hold(Exception):
    """Wait and run again without counting a failure (breaker open, no slot under a limit)."""

    def __init__(self, delay_seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_seconds = delay_seconds
        self.reason = reason


@dataclass
class JobInfo:
    """Filled in by the job as it learns it: which provider, which retry schedule."""

    kind: str
    queue: str
    tenant: str
    lead_id: str
    attempt: int = 1
    provider: str = ""
    schedule: RetrySchedule | None = None
    fresh_config: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def classify(err: BaseException) -> tuple[ErrorClass, float | None, str]:
    """(class, retry-after seconds, provider) of any exception a job can meet."""
    if isinstance(err, ProviderError):
        return err.error_class, err.retry_after, err.provider
    if isinstance(err, grpc.RpcError):
        code = err.code()
        if code in _TRANSIENT_CODES:
            return ErrorClass.TEMPORARY, None, ""
        if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            return ErrorClass.VALIDATION, None, ""
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            return ErrorClass.BUSINESS, None, ""
        return ErrorClass.SYSTEM, None, ""
    if isinstance(err, ConnectionError | TimeoutError):
        return ErrorClass.TEMPORARY, None, ""
    return ErrorClass.SYSTEM, None, ""


def _current_options() -> dict[str, Any]:
    message = CurrentMessage.get_current_message()
    return message.options if message is not None else {}


def _report_wait(ctx: WorkerContext, info: JobInfo, kind: str, delay: float, detail: dict[str, Any]) -> None:
    """Tell the dispatcher the job is still ours until then, so its sweeper does not resend it."""
    if delay < ctx.settings.report_wait_over_seconds:
        return
    try:
        ctx.dispatcher.RecordEvent(
            dispatcher_pb2.RecordEventRequest(
                tenant=info.tenant,
                lead_id=info.lead_id,
                kind=kind,
                detail_json=json.dumps({"job": info.kind, "attempt": info.attempt, **detail}),
                next_attempt_at=to_proto(utcnow() + timedelta(seconds=delay)),
            )
        )
    except grpc.RpcError as err:
        # The retry happens anyway; at worst the sweeper sends a duplicate, which is harmless.
        log.warning("wait_not_reported", code=str(err.code()))


def run_job(ctx: WorkerContext, info: JobInfo, body: Callable[[JobInfo], None]) -> None:
    options = _current_options()
    info.fresh_config = bool(options.get(queues.FRESH_CONFIG_OPTION))
    try:
        body(info)
        return
    except Hold as hold:
        _report_wait(ctx, info, "held", hold.delay_seconds, {"reason": hold.reason})
        log.info(
            "job_held", job=info.kind, lead_id=info.lead_id, reason=hold.reason, delay=hold.delay_seconds
        )
        raise dramatiq.Retry(hold.reason, delay=max(1, int(hold.delay_seconds * 1000))) from None
    except dramatiq.Retry:
        raise
    except Exception as err:
        error_class, retry_after, provider = classify(err)
        failures = int(options.get("failures", 0)) + 1
        options["failures"] = failures
        schedule = info.schedule or ctx.default_schedule
        outcome = decide(error_class, failures, schedule, retry_after, random.Random())
        record_failure(info.kind, str(error_class), provider, str(outcome.action))
        # The message may quote a value (a refused field, a provider's echo): masked here for the
        # log, the retry, the timeline; the dispatcher also removes the lead's own values from a
        # dead letter (names are no pattern).
        error = scrub(f"{type(err).__name__}: {err}")
        log.warning(
            "job_failed",
            job=info.kind,
            lead_id=info.lead_id,
            error_class=str(error_class),
            failures=failures,
            action=str(outcome.action),
            delay=round(outcome.delay_seconds, 3),
            error=error[:500],
        )
        if outcome.action is Action.RETRY:
            _report_wait(
                ctx,
                info,
                "retrying",
                outcome.delay_seconds,
                {
                    "error_class": str(error_class),
                    "failures": failures,
                    "delay_seconds": outcome.delay_seconds,
                },
            )
            raise dramatiq.Retry(error[:200], delay=max(1, int(outcome.delay_seconds * 1000))) from None
        if outcome.action is Action.DEAD_LETTER:
            dead_letter(ctx, info, str(error_class), error, failures, provider, options)
            return
        # STOP: nothing can be done now and retrying cannot help; say so on the timeline.
        ctx.dispatcher.RecordEvent(
            dispatcher_pb2.RecordEventRequest(
                tenant=info.tenant,
                lead_id=info.lead_id,
                kind="stopped",
                detail_json=json.dumps(
                    {"job": info.kind, "error_class": str(error_class), "error": error[:500]}
                ),
            )
        )


def dead_letter(
    ctx: WorkerContext,
    info: JobInfo,
    error_class: str,
    error: str,
    failures: int,
    provider: str,
    options: dict[str, Any],
) -> None:
    message = CurrentMessage.get_current_message()
    message_id = message.message_id if message is not None else ""
    body = (
        {
            "queue_name": message.queue_name,
            "actor_name": message.actor_name,
            "args": list(message.args),
            "message_id": message.message_id,
            "options": {k: v for k, v in options.items() if k in ("request_id", "job_id", "failures")},
        }
        if message is not None
        else {}
    )
    ctx.dispatcher.RecordDeadLetter(
        dispatcher_pb2.DeadLetter(
            # One dead letter per message, however often this report is redelivered.
            dead_letter_id=message_id.replace("-", ""),
            tenant=info.tenant,
            queue=info.queue,
            lead_id=info.lead_id,
            actor=info.kind,
            error_class=error_class,
            error=f"{provider + ': ' if provider else ''}{error}"[:4000],
            attempts=failures,
            failed_at=to_proto(utcnow()),
            message_json=json.dumps(body),
            job_kind=info.kind,
            job_attempt=info.attempt,
        )
    )
    log.error(
        "job_dead_lettered", job=info.kind, lead_id=info.lead_id, error_class=error_class, attempts=failures
    )

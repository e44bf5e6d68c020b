"""What to do after a failure: the error's class decides. Pure; no I/O.

- temporary: retry with exponential backoff and jitter, bounded, up to max_retries;
- rate_limited: wait the provider's Retry-After (or the backoff), then retry;
- system: retry a few times (our bug or our dependency), then dead-letter;
- validation, external: dead-letter at once (retrying cannot help; a person must look);
- consent, business: stop (the dial path defers to compliance's instant instead).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from leadflow_enrichment.failures import ErrorClass


class Action(StrEnum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    STOP = "stop"


MAX_RETRY_AFTER_SECONDS = 3600.0


@dataclass(frozen=True)
class RetrySchedule:
    max_retries: int = 8
    base_seconds: float = 2.0
    max_seconds: float = 600.0
    system_max_retries: int = 3

    @classmethod
    def from_options(cls, options: dict[str, str], default: RetrySchedule) -> RetrySchedule:
        """A tenant's provider options override the deployment's schedule (bad values ignored)."""

        def num(key: str, fallback: float) -> float:
            try:
                value = float(options.get(key, ""))
            except ValueError:
                return fallback
            return value if value >= 0 else fallback

        return cls(
            max_retries=int(num("max_retries", default.max_retries)),
            base_seconds=num("retry_base_seconds", default.base_seconds),
            max_seconds=num("retry_max_seconds", default.max_seconds),
            system_max_retries=default.system_max_retries,
        )


@dataclass(frozen=True)
class Outcome:
    action: Action
    delay_seconds: float = 0.0


def backoff_seconds(failures: int, schedule: RetrySchedule, rng: random.Random) -> float:
    """Exponential in the number of failures so far, capped, with "equal jitter" (half fixed)."""
    ceiling = min(schedule.max_seconds, schedule.base_seconds * (2 ** max(0, failures - 1)))
    return float(ceiling / 2 + rng.uniform(0, ceiling / 2))


def decide(
    error_class: ErrorClass,
    failures: int,
    schedule: RetrySchedule,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> Outcome:
    """`failures` counts this one: the first failure is 1."""
    rng = rng or random.Random()
    if error_class in (ErrorClass.VALIDATION, ErrorClass.EXTERNAL):
        return Outcome(Action.DEAD_LETTER)
    if error_class in (ErrorClass.CONSENT, ErrorClass.BUSINESS):
        return Outcome(Action.STOP)
    limit = schedule.system_max_retries if error_class is ErrorClass.SYSTEM else schedule.max_retries
    if failures > limit:
        return Outcome(Action.DEAD_LETTER)
    delay = backoff_seconds(failures, schedule, rng)
    if error_class is ErrorClass.RATE_LIMITED and retry_after is not None:
        # The provider said when: never sooner. Dramatiq delays are for short waits, so an
        # absurd Retry-After is capped at an hour (the job still never runs early by our clock).
        delay = min(max(retry_after, 0.0), MAX_RETRY_AFTER_SECONDS)
    return Outcome(Action.RETRY, delay)

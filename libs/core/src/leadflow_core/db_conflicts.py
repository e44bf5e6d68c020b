"""Run a transaction again when PostgreSQL aborted it to break a deadlock or a serialization
conflict: the loser's work was rolled back whole, so running it again is safe and is what
PostgreSQL's documentation asks of the application."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError

from leadflow_core.logs import get_logger

log = get_logger(__name__)

# deadlock_detected, serialization_failure
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})

P = ParamSpec("P")
R = TypeVar("R")


def is_conflict(err: BaseException) -> bool:
    return getattr(getattr(err, "orig", None), "sqlstate", None) in CONFLICT_SQLSTATES


def retry_conflicts(attempts: int = 5) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function that runs exactly one transaction and has no effect outside it."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            for attempt in range(1, attempts + 1):
                try:
                    return fn(*args, **kwargs)
                except DBAPIError as err:
                    if attempt == attempts or not is_conflict(err):
                        raise
                    log.warning("transaction_conflict_retried", function=fn.__qualname__, attempt=attempt)
                    # A little jitter, so the two losers of one cycle do not meet again.
                    time.sleep(random.uniform(0, 0.005 * 2**attempt))
            raise AssertionError("unreachable")

        return run

    return wrap

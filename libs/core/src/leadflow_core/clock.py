"""The service clock. `LEADFLOW_CLOCK_OFFSET_SECONDS` shifts it for drills and end-to-end tests.

Calling-hours decisions depend on the callee's local time, so an end-to-end test that must see a
dial cannot depend on when CI happens to run; it moves the compliance clock to a known weekday
morning instead. Production leaves the offset at 0 (the service logs a warning otherwise).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from functools import cache


@cache
def offset() -> timedelta:
    return timedelta(seconds=float(os.environ.get("LEADFLOW_CLOCK_OFFSET_SECONDS", "0") or 0))


def now() -> datetime:
    return datetime.now(UTC) + offset()


def production() -> bool:
    """`LEADFLOW_ENVIRONMENT=production` (the chart sets it): test hooks are refused."""
    return os.environ.get("LEADFLOW_ENVIRONMENT", "development").strip().lower() == "production"


def refuse_test_clock() -> None:
    """A production process must not run on a shifted clock: calling hours depend on it."""
    if production() and offset():
        raise SystemExit(
            "LEADFLOW_CLOCK_OFFSET_SECONDS is a test hook and LEADFLOW_ENVIRONMENT is production: "
            "refusing to start"
        )

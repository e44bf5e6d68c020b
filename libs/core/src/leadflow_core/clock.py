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

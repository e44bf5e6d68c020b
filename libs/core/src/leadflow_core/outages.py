"""Which exceptions mean "a dependency is down" (Redis, PostgreSQL, the network), not "a bug".

A server answers those UNAVAILABLE, which every caller retries; left alone they would surface
as UNKNOWN, which callers must treat as a crash of ours (and a worker would give up sooner).
"""

from __future__ import annotations

import redis.exceptions
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

_OUTAGES: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # also BusyLoadingError: Redis restarting from its AOF
    redis.exceptions.TimeoutError,
    OperationalError,  # PostgreSQL gone, restarting, or refusing connections
    InterfaceError,
    ConnectionError,
    TimeoutError,
)


def is_outage(err: BaseException) -> bool:
    if isinstance(err, _OUTAGES):
        return True
    return isinstance(err, DBAPIError) and bool(err.connection_invalidated)

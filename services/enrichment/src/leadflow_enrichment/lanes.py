"""Which lane the job on this thread travels in: urgent dials or the bulk of the work.

Batched hops are per lane: an emergency dial's reads and reports never wait behind a bulk
batch in flight (the batchers keep one batch in flight, and bulk batches grow with the load).
"""

from __future__ import annotations

from contextvars import ContextVar

from dramatiq.common import q_name

from leadflow_core.queues import URGENT_QUEUES

urgent_lane: ContextVar[bool] = ContextVar("leadflow_urgent_lane", default=False)


def is_urgent(queue_name: str) -> bool:
    """A message of an urgent dial queue (or of its delay queue)."""
    return q_name(queue_name) in URGENT_QUEUES

"""Queue and actor names: the contract between the dispatcher (producer) and the workers."""

from __future__ import annotations

from typing import Final

ENRICH: Final = "enrich"
CRM_SYNC: Final = "crm_sync"
CALL_STATUS: Final = "call_status"
URGENCIES: Final = ("emergency", "high", "medium", "low")
DIAL_QUEUES: Final = tuple(f"dial.{u}" for u in URGENCIES)
ALL_QUEUES: Final = (*DIAL_QUEUES, ENRICH, CRM_SYNC, CALL_STATUS)
# Dial queues a lead must leave at once: their own worker threads and batched hops.
URGENT_QUEUES: Final = frozenset({"dial.emergency", "dial.high"})

# Actor names (a message names its actor; one `dial` actor serves every dial queue).
ENRICH_ACTOR: Final = "enrich"
CRM_SYNC_ACTOR: Final = "crm_sync"
DIAL_ACTOR: Final = "dial"
CALL_STATUS_ACTOR: Final = "call_status"

# Message option set on a replayed dead letter's job: the worker reads the tenant's provider
# config fresh instead of from its short cache, as a replay usually follows a config fix.
FRESH_CONFIG_OPTION: Final = "fresh_config"

# Default delay before dialing, per urgency, in seconds (a tenant may override).
DEFAULT_DIAL_DELAY_SECONDS: Final = {"emergency": 0, "high": 30, "medium": 300, "low": 1800}


def dial_queue(urgency: str) -> str:
    if urgency not in URGENCIES:
        raise ValueError(f"unknown urgency {urgency!r}")
    return f"dial.{urgency}"

"""The dispatcher's store: one object with every repository operation, scoped by tenant."""

from __future__ import annotations

from leadflow_dispatcher.admin_stats import AdminStatsStore
from leadflow_dispatcher.attempts import AttemptStore, ClaimResult
from leadflow_dispatcher.dead_letters import DeadLetterStore
from leadflow_dispatcher.deferred_release import DeferredReleaseStore
from leadflow_dispatcher.dial_batches import DialBatchStore
from leadflow_dispatcher.events import EventDeliveryStore
from leadflow_dispatcher.leads import LeadStore
from leadflow_dispatcher.outbox import ExpiredJob, OutboxStore, SettleOutcome, SettleWork
from leadflow_dispatcher.person_order import SubmitResult
from leadflow_dispatcher.repository import NotFound
from leadflow_dispatcher.request_log import RequestLogStore
from leadflow_dispatcher.reviews import ReviewStore
from leadflow_dispatcher.worker_reads import WorkerReadStore


class Store(
    LeadStore,
    DialBatchStore,
    AttemptStore,
    DeadLetterStore,
    OutboxStore,
    ReviewStore,
    AdminStatsStore,
    WorkerReadStore,
    DeferredReleaseStore,
    RequestLogStore,
    EventDeliveryStore,
):
    """Every repository of the dispatcher over one engine."""


__all__ = ["ClaimResult", "ExpiredJob", "NotFound", "SettleOutcome", "SettleWork", "Store", "SubmitResult"]

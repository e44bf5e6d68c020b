"""The dispatcher's settings (`LEADFLOW_*`); every value has a safe local default."""

from __future__ import annotations

from pydantic import Field

from leadflow_core.settings import CommonSettings


class DispatcherSettings(CommonSettings):
    # Where Prometheus scrapes queue depth and age, with /healthz and /readyz (port 0 picks a free
    # port). 9102 is the image's and the chart's metrics port.
    dispatcher_metrics_addr: str = "127.0.0.1:9102"
    # Written with the metrics port once it listens (tests bind port 0).
    metrics_port_file: str = ""
    # Deployment-wide dial delays per urgency (seconds), over the defaults of leadflow_core.queues;
    # a tenant's policy.dial_delay_seconds overrides these. JSON, e.g. '{"low": 2}'.
    dial_delay_seconds: dict[str, int] = Field(default_factory=dict)
    # Dramatiq's delay is for short waits only (workers hold delayed messages in memory): work
    # due further out stays in the database until the relay enqueues it.
    max_broker_delay_seconds: float = 600.0
    # How often the relay looks for due and overdue work.
    relay_interval_seconds: float = 0.5
    # Work enqueued but not reported done this long after it was due is enqueued again
    # (Redis lost it, or a worker died holding it). Workers extend it while they retry.
    job_lease_seconds: float = 120.0
    # Work whose message is still in Redis is left alone (a backlog) until this old: then it is
    # resent anyway, in case the worker holding it died (Dramatiq recovers such messages only
    # after its heartbeat timeout, and then only by chance).
    job_stuck_seconds: float = 600.0
    # A placed call with no final status callback after this long is reconciled with the provider.
    call_status_timeout_seconds: float = 900.0
    # A claimed dial attempt with no result after this long may be resumed by another worker
    # (same attempt id: the provider call is idempotent on it).
    claim_stale_seconds: float = 60.0
    # A repeat lead for a person joins a call placed this recently instead of starting another.
    join_window_seconds: float = 3600.0
    # Leads of one person and campaign arriving this close to the first merge into it (no new
    # lead, no second call); a tenant's policy.merge_window_seconds overrides it, 0 = never.
    merge_window_seconds: float = 86_400.0
    # Fallbacks when the tenant's policy cannot be read from compliance.
    default_max_dial_attempts: int = 3
    default_retry_backoff_seconds: int = 600
    # Seconds a tenant policy read from compliance is reused.
    policy_cache_seconds: float = 30.0
    # Rows the relay handles per pass.
    relay_batch_size: int = 500
    # A replay grant lapses this many seconds after an operator asked for the replay.
    replay_grant_seconds: float = 60.0
    # How often old inbound requests are deleted; the retention is each tenant's
    # policy.requestLogRetentionDays (this default when compliance cannot say).
    request_log_sweep_seconds: float = 300.0
    request_log_retention_days: int = 7

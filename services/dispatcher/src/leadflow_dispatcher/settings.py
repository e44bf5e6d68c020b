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
    # Work enqueued but not reported done this long after it was due is looked at again: gone
    # from Redis (a restart or flush lost it, or a dispatcher died between commit and enqueue)
    # it is enqueued again; still there (a backlog, a running job) the lease is extended.
    # Workers extend it while they retry. Recovery after Redis or a dispatcher comes back takes
    # at most this long.
    job_lease_seconds: float = 30.0
    # A dead worker's messages come back through the heartbeat check below, within
    # worker_heartbeat_timeout_seconds + dead_worker_check_seconds. This is only the last resort
    # for a message still in Redis this long after it was enqueued (counted from the enqueue,
    # so a long backlog must not reach it: a resend would double the backlog's work).
    job_stuck_seconds: float = 600.0
    # How often the relay looks for dead workers (heartbeat older than the timeout).
    dead_worker_check_seconds: float = 5.0
    # A placed call with no final status callback after this long is reconciled with the provider.
    call_status_timeout_seconds: float = 900.0
    # A call that ended without a price (Twilio's callbacks carry none) has it looked up at the
    # provider this long after its end; its reservation is settled at the estimate meanwhile.
    call_price_delay_seconds: float = 60.0
    # A claimed dial attempt with no result after this long may be resumed by another worker.
    # Longer than the dial job's time limit (the worker's dial_time_limit_seconds), so a live
    # worker never loses a claim it is still using; a dead worker's claim is free within it.
    claim_stale_seconds: float = 45.0
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
    # A tenant change (resume, higher limits) releases the tenant's deferred dials this long
    # after it is announced: the moment every compliance process has heard of it too.
    release_after_seconds: float = 0.5
    # Rows the relay handles per pass.
    relay_batch_size: int = 500
    # A replay grant lapses this many seconds after an operator asked for the replay.
    replay_grant_seconds: float = 60.0
    # How often old inbound requests are deleted; the retention is each tenant's
    # policy.requestLogRetentionDays (this default when compliance cannot say).
    request_log_sweep_seconds: float = 300.0
    request_log_retention_days: int = 7
    # Events out (tenants' eventEndpoints): how often due deliveries are sent, how many at once,
    # and the retry schedule (min_backoff doubling per failure up to max_backoff).
    event_delivery_interval_seconds: float = 0.5
    event_delivery_batch_size: int = 100
    event_delivery_concurrency: int = 8
    event_delivery_timeout_seconds: float = 10.0
    # A claimed delivery comes back after this long if its sender died mid-attempt.
    event_delivery_lease_seconds: float = 60.0
    event_max_attempts: int = 8
    event_min_backoff_seconds: float = 5.0
    event_max_backoff_seconds: float = 3600.0

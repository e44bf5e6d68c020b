"""The workers' settings (`LEADFLOW_*`): queues and threads, retries, breakers, rate limits."""

from __future__ import annotations

from typing import NamedTuple

from pydantic import Field

from leadflow_enrichment.providers.settings import ProviderSettings

# Queue groups, each with its own threads, so a backlog in one never delays another:
# "name=queue,queue:threads". These are a lone worker process's (`python -m leadflow_enrichment`).
# Threads mostly wait on I/O; the more run at once, the more of their reads and reports share
# one RPC (see batching). In one process, more bulk threads also slow the urgent ones (they
# share the GIL): draining 2,000 leads, (8, 16, 32) threads instead of these cut the dispatcher's
# statements and RPCs per lead by a third and drained 1.4x faster, but doubled emergency
# lead -> dial latency (p99 322 -> 591 ms).
DEFAULT_GROUPS = (
    "urgent=dial.emergency,dial.high:8",
    "dial=dial.medium,dial.low:8",
    "jobs=enrich,crm_sync,call_status:16",
)


class WorkerProcess(NamedTuple):
    groups: tuple[str, ...]
    local_metrics_addr: str  # the other components' local ports are 9102-9106


# The worker processes `make run` and the benchmark start, as the Helm chart runs one Deployment
# per group: urgent dials in a process of their own, so the bulk groups can take more threads
# (bigger batched RPCs, less CPU per lead) without holding the GIL the urgent ones wait for.
# Back to back against one process of DEFAULT_GROUPS: 18-22 against 16 leads/s end to end,
# and emergency lead -> dial as fast at the same load.
WORKER_PROCESSES: dict[str, WorkerProcess] = {
    "workers-urgent": WorkerProcess(("urgent=dial.emergency,dial.high:8",), "127.0.0.1:9107"),
    "workers": WorkerProcess(
        ("dial=dial.medium,dial.low:16", "jobs=enrich,crm_sync,call_status:32"), "127.0.0.1:9104"
    ),
}


class WorkerSettings(ProviderSettings):
    # Queue groups this process runs (see DEFAULT_GROUPS); `--queues` on the command line
    # replaces them with one group.
    worker_groups: list[str] = Field(default_factory=lambda: list(DEFAULT_GROUPS))
    # /metrics, /healthz (liveness) and /readyz (Redis answers, workers consuming); port 0 picks
    # a free port. 9102 is the image's and the chart's metrics port.
    worker_metrics_addr: str = "127.0.0.1:9104"
    metrics_port_file: str = ""
    # Longest idle poll interval of a worker's consumers (ms); shorter for the urgent dial queues.
    # An idle urgent process polls its two queues and their delay queues: 100 ms cost it 2.9 % of
    # a core, 25 ms 8.9 %, 10 ms 15.8 %; 10 ms took ~35 ms off emergency lead -> dial (p50 ~100 ms).
    poll_ms: int = 1000
    urgent_poll_ms: int = 100
    # The gateway's public address; dialer status callbacks go to
    # <public_base_url>/v1/calls/<tenant>/status. Empty: http://<gateway_addr>.
    public_base_url: str = ""

    # Retries of failing jobs: exponential backoff with jitter, bounded. A tenant may override
    # them per provider kind with the options max_retries, retry_base_seconds, retry_max_seconds.
    max_retries: int = 8
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 600.0
    # Our own bugs and broken dependencies get a few tries only.
    system_max_retries: int = 3

    # Per-tenant, per-provider circuit breaker.
    breaker_failure_threshold: int = 5
    breaker_window_seconds: float = 30.0
    breaker_open_seconds: float = 30.0
    # Jobs held behind a half-open breaker's probe look again this often.
    breaker_probe_poll_seconds: float = 2.0
    # A breaker seen closed with no failures is not read again for this long (0: every job).
    breaker_cache_seconds: float = 1.0

    # Per-provider limits (per tenant account), overridable in a tenant's provider options
    # `concurrency` and `rate_per_second`. 0 = unlimited.
    provider_concurrency: dict[str, int] = Field(
        default_factory=lambda: {"twilio": 10, "salesforce": 5, "hubspot": 5, "openai": 8}
    )
    provider_rate_per_second: dict[str, int] = Field(
        default_factory=lambda: {"twilio": 1, "salesforce": 20, "hubspot": 10, "openai": 10}
    )
    # How long a job waits before trying again for a slot under a limit.
    limit_wait_seconds: float = 0.25
    # Seconds a tenant's provider config (from compliance) is reused.
    provider_config_cache_seconds: float = 10.0
    # Polling a call whose final status the provider has not reported yet.
    call_status_poll_seconds: float = 60.0
    # A call's price is looked up again this often until the provider has it, for at most
    # call_price_wait_seconds after the call's end (then the estimate stands).
    call_price_poll_seconds: float = 60.0
    call_price_wait_seconds: float = 21_600.0
    # Before a provider lookup may prove "no call": how long after the attempt's "dialing" (a
    # create still in flight at the provider, or not yet in its list), and how far before it
    # the lookup reaches (clock skew between us and the provider).
    dial_reconcile_grace_seconds: float = 5.0
    dial_reconcile_skew_seconds: float = 2.0
    # A lookup the provider failed for a while (5xx, timeout) is tried again this many times in
    # all, this far apart, before the lead goes to review: the attempt waits as "unsure".
    dial_lookup_attempts: int = 4
    dial_lookup_retry_seconds: float = 5.0
    # Worker threads' lead reads and reports share one RPC: up to this many, waiting at most
    # this long for company (the first caller's extra latency).
    batch_max_size: int = 64
    batch_max_wait_seconds: float = 0.002
    # Dramatiq's per-message time limit.
    job_time_limit_seconds: float = 120.0
    # A person's CRM writes are serialised by a Redis lock held across the CRM lookup and write
    # (each bounded by the provider timeout). A worker killed while holding it blocks that
    # person's sync until it expires, so it expires well before the job time limit.
    person_lock_seconds: float = 40.0
    # The dial job's own, shorter limit: below the dispatcher's claim_stale_seconds, so a dial
    # is over (placed, failed or interrupted) before its claim could be taken as abandoned.
    dial_time_limit_seconds: float = 40.0
    # A dial job whose attempt another worker holds asks again this often (see jobs.dial).
    claim_poll_seconds: float = 5.0
    # Lease the dispatcher grants a job; retries that wait longer report it to the dispatcher.
    report_wait_over_seconds: float = 5.0

    @property
    def callback_base(self) -> str:
        return self.public_base_url.rstrip("/") or f"http://{self.gateway_addr}"

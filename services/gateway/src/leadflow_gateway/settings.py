"""Gateway settings (`LEADFLOW_*`): limits, timeouts and the Meta Graph API base URL."""

from __future__ import annotations

from typing import Literal

from leadflow_core.settings import CommonSettings


class GatewaySettings(CommonSettings):
    # /metrics (with /healthz, /readyz) on its own port, never the public one; port 0 picks one.
    # 9102 is the image's and the chart's metrics port.
    gateway_metrics_addr: str = "127.0.0.1:9105"
    metrics_port_file: str = ""
    # HTTP server processes sharing the listening socket; 0 = one per core (production), 1 = this one.
    gateway_processes: int = 1
    # uvicorn's event loop and HTTP parser: uvloop and httptools are the C implementations.
    gateway_loop: Literal["uvloop", "asyncio", "auto"] = "uvloop"
    # httptools carries the edge limits below (http_limits); h11 is uvicorn's own, without them.
    gateway_http: Literal["httptools", "h11"] = "httptools"
    # The public edge (http_limits): request line 414, head size and header count 431, time to
    # send the head and the body 408, idle keep-alive connections closed.
    edge_max_url_bytes: int = 8 * 1024
    edge_max_head_bytes: int = 32 * 1024
    edge_max_headers: int = 100
    edge_head_timeout_seconds: float = 10.0
    edge_body_timeout_seconds: float = 30.0
    edge_keep_alive_seconds: int = 5
    # Concurrent leads share one EvaluateBatch and one SubmitLeads call: a batch goes when it has
    # this many leads or its first lead has waited this long.
    gateway_batch_max_size: int = 64
    gateway_batch_delay_ms: float = 2.0
    # Batch calls per hop running at once (0 = no limit); later leads wait for one to finish and
    # go together, so batches grow with the load.
    gateway_batch_max_in_flight: int = 2
    # Deadline of each RPC to compliance and dispatcher.
    gateway_rpc_timeout_seconds: float = 5.0
    # Source configs are cached this long; changes take at most this to apply. (API keys are
    # asked of compliance per request: a revocation holds at once.)
    source_cache_seconds: float = 5.0
    # Body limit when a source sets no `max_body_bytes` option (Salesforce may send 100 leads).
    max_body_bytes: int = 64 * 1024
    salesforce_max_body_bytes: int = 1024 * 1024
    # Abuse limits, requests per minute; a source's `rate_limit_per_minute` option overrides the tenant's.
    rate_limit_ip_per_minute: int = 1200
    rate_limit_tenant_per_minute: int = 6000
    # Without Redis the limits cannot be counted: let leads in (True) rather than refuse them.
    rate_limit_fail_open: bool = True
    # Seconds a sender is told to wait when a dependency is down.
    retry_after_seconds: int = 5
    # Base URL of the Graph API, with version; tests point it at a fake on loopback.
    meta_graph_url: str = "https://graph.facebook.com/v21.0"
    meta_graph_timeout_seconds: float = 5.0
    meta_graph_attempts: int = 3
    # The URL senders were given (https://leads.example.com), for signatures over the full URL
    # (HubSpot v3, Twilio) when a proxy sits in front; empty = the URL the request arrived at.
    public_base_url: str = ""
    # Window for timestamped signatures (HubSpot v3, Standard Webhooks).
    signature_tolerance_seconds: int = 300

"""Gateway settings (`LEADFLOW_*`): limits, timeouts and the Meta Graph API base URL."""

from __future__ import annotations

from leadflow_core.settings import CommonSettings


class GatewaySettings(CommonSettings):
    # /metrics (with /healthz, /readyz) on its own port, never the public one; port 0 picks one.
    # 9102 is the image's and the chart's metrics port.
    gateway_metrics_addr: str = "127.0.0.1:9105"
    metrics_port_file: str = ""
    # Deadline of each RPC to compliance and dispatcher.
    gateway_rpc_timeout_seconds: float = 5.0
    # Source configs and API keys are cached this long; changes take at most this to apply.
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

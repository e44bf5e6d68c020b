"""Settings of the compliance service (env `LEADFLOW_*`)."""

from __future__ import annotations

from leadflow_core.settings import CommonSettings


class ComplianceSettings(CommonSettings):
    # /metrics, /healthz, /readyz (never on the gRPC port); port 0 picks a free one.
    compliance_metrics_addr: str = "127.0.0.1:9103"
    # Written with the metrics port once it listens (tests bind port 0).
    metrics_port_file: str = ""
    # Tenants stay cached this long while the process hears tenant changes (LISTEN/NOTIFY on
    # PostgreSQL); without that, one second.
    tenant_cache_seconds: float = 60.0
    # Verified API keys stay cached this long while the process hears revocations (as above);
    # without that, one second.
    api_key_cache_seconds: float = 300.0
    # How often the keys' last-use times are written (one statement for all keys used).
    api_key_usage_flush_seconds: float = 30.0
    # How long a reservation may hold a concurrency slot before it is presumed lost.
    reservation_ttl_seconds: int = 3600
    # How long a paused tenant's or stopped dial is deferred before it is asked about again.
    pause_retry_seconds: int = 300
    # FCC Reassigned Numbers Database endpoint; empty = no lookups (answers "no data").
    reassigned_numbers_url: str = ""
    reassigned_numbers_api_key: str = ""
    # TrustedForm / Jornaya consent-proof checks; empty key = not checked.
    trustedform_api_key: str = ""
    # Only URLs under this base are ever claimed (tests point it at a local fake).
    trustedform_base_url: str = "https://cert.trustedform.com"
    # Jornaya LeadiD authenticate endpoint and account key; either empty = only the GUID shape
    # of a LeadiD is checked. The key is only ever sent to this URL.
    jornaya_url: str = ""
    jornaya_api_key: str = ""
    # Rows per batch when loading a DNC registry file.
    dnc_import_batch: int = 50_000

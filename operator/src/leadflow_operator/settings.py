"""The operator's settings (env `LEADFLOW_*`)."""

from __future__ import annotations

from leadflow_core.settings import CommonSettings


class OperatorSettings(CommonSettings):
    # /metrics with reconcile counts (empty: none); port 0 picks a free port. 9102 is the image's
    # and the chart's metrics port.
    operator_metrics_addr: str = "127.0.0.1:9106"
    metrics_port_file: str = ""
    # Namespace whose Tenants (and the Secrets they name) the operator handles; empty = every
    # namespace (development only: the chart's RBAC is namespaced).
    operator_namespace: str = ""
    # Seconds between status.usage refreshes (and drift checks against compliance).
    operator_usage_interval_seconds: float = 30.0
    # kopf's liveness endpoint, e.g. http://0.0.0.0:8080/healthz; empty = none.
    operator_liveness_endpoint: str = ""
    # Development and tests: talk to this API server URL without credentials.
    operator_kube_server: str = ""

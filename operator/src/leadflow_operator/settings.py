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


def require_port(addr: str) -> str:
    """A gRPC target with an explicit port. Without one gRPC silently dials 443, so
    `compliance:50051` is fine and `compliance` is refused at start with a clear message."""
    if "://" in addr or addr.startswith(("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")):
        return addr
    host, sep, port = addr.rpartition(":")
    # Only ASCII digits are a port ("²" is a digit to str.isdigit()).
    digits = port.isascii() and port.isdigit()
    if not sep or not host or host.endswith(":") or not digits or not 0 < int(port) < 65536:
        raise ValueError(
            f"LEADFLOW_COMPLIANCE_ADDR={addr!r} has no port: give host:port, e.g. compliance:50051 "
            "(without a port gRPC would dial 443)"
        )
    return addr

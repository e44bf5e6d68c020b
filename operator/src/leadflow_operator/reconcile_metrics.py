"""Operator metrics: reconciles by result and reason, usage reports, and the metrics port.

`leadflow_operator_reconciles_total{result}` (applied, retry, failed) and
`leadflow_operator_reconcile_errors_total{reason}` (InvalidSpec, SecretMissing,
ComplianceUnavailable, Rejected, KubeUnavailable): bounded labels, never a tenant name.
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import Counter

from leadflow_core.grpc_server import write_port_file
from leadflow_core.metrics_server import bound_port, start_metrics_server

RECONCILES = Counter(
    "leadflow_operator_reconciles_total",
    "Tenant reconciles, by result (applied, retry, failed).",
    ["result"],
)
RECONCILE_ERRORS = Counter(
    "leadflow_operator_reconcile_errors_total",
    "Tenant reconciles that did not apply, by reason.",
    ["reason"],
)
USAGE_REPORTS = Counter(
    "leadflow_operator_usage_reports_total",
    "Usage written back into Tenant status, by result (ok, failed).",
    ["result"],
)


def record_reconcile(retry: str | None, reason: str) -> None:
    if retry is None:
        RECONCILES.labels("applied").inc()
        return
    RECONCILES.labels("retry" if retry == "temporary" else "failed").inc()
    RECONCILE_ERRORS.labels(reason or "Unknown").inc()


_served = threading.Event()


def serve_metrics_once(addr: str, port_file: str) -> None:
    """Start the metrics port on the first operator startup in this process; a port already taken
    leaves the operator running without one (it is an observer, not a dependency)."""
    if not addr or _served.is_set():
        return
    try:
        server = start_metrics_server(addr)
    except OSError as err:
        logging.getLogger("leadflow.operator").warning("metrics port %s unavailable: %s", addr, err)
        return
    _served.set()
    write_port_file(port_file, bound_port(server))

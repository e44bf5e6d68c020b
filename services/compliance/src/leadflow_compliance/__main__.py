"""`python -m leadflow_compliance`: serve ComplianceService and TenantAdminService."""

from __future__ import annotations

from leadflow_compliance.server import start
from leadflow_compliance.settings import ComplianceSettings
from leadflow_core import tls
from leadflow_core.grpc_server import serve_until_signal, write_port_file
from leadflow_core.logs import configure
from leadflow_core.metrics_server import bound_port, start_metrics_server


def main() -> None:
    settings = ComplianceSettings()
    configure("compliance", settings.log_level)
    tls.set_component("compliance")
    service = start(settings)
    metrics = start_metrics_server(settings.compliance_metrics_addr)
    write_port_file(settings.metrics_port_file, bound_port(metrics))
    write_port_file(settings.port_file, service.running.port)
    serve_until_signal(service.running, settings.shutdown_grace_seconds, on_stop=service.close)


if __name__ == "__main__":
    main()

"""`python -m leadflow_operator`: run the kopf operator (one replica; the chart uses Recreate)."""

from __future__ import annotations

import kopf

from leadflow_core import tls
from leadflow_core.logs import configure
from leadflow_operator import handlers  # noqa: F401  (registers the handlers)
from leadflow_operator.settings import OperatorSettings, require_port


def main() -> None:
    settings = OperatorSettings()
    try:
        require_port(settings.compliance_addr)
    except ValueError as err:
        raise SystemExit(f"leadflow-operator: {err}") from None
    configure("operator", settings.log_level)
    tls.set_component("operator")
    namespace = settings.operator_namespace
    kopf.run(
        standalone=True,  # one replica: no peering objects to create or watch
        clusterwide=not namespace,
        namespaces=[namespace] if namespace else (),
        liveness_endpoint=settings.operator_liveness_endpoint or None,
    )


if __name__ == "__main__":
    main()

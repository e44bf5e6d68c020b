"""`python -m leadflow_operator` as the chart runs it: a real process, liveness endpoint, SIGTERM."""

from __future__ import annotations

import json
import socket
import urllib.request
import uuid
from pathlib import Path

from leadflow_core.testing import ServiceProcess, python_module, wait_for

from .kube_emulator import KubeEmulator
from .test_kopf_operator import NS, Compliance


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (http, loopback)
            return bool(resp.status == 200)
    except OSError:
        return False


def test_operator_process(kube: KubeEmulator, compliance_process: ServiceProcess, tmp_path: Path) -> None:
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    env = {
        "LEADFLOW_COMPLIANCE_ADDR": compliance_process.addr,
        "LEADFLOW_OPERATOR_KUBE_SERVER": kube.url,
        "LEADFLOW_OPERATOR_NAMESPACE": NS,
        "LEADFLOW_OPERATOR_LIVENESS_ENDPOINT": liveness,
        "LEADFLOW_OPERATOR_USAGE_INTERVAL_SECONDS": "1",
    }
    proc = ServiceProcess("operator", python_module("leadflow_operator"), env, tmp_path)
    proc.start(wait_port=False)  # kopf writes no port file; the liveness endpoint tells
    compliance = Compliance(compliance_process.addr)
    name = f"proc-{uuid.uuid4().hex[:8]}"
    try:
        wait_for(lambda: healthy(liveness), timeout=60, what="the liveness endpoint")
        kube.create_tenant(NS, name, {"displayName": "From a process"})
        held = wait_for(lambda: compliance.tenant(name), timeout=60, what="the tenant in compliance")
        assert held.display_name == "From a process"
    finally:
        compliance.close()
        code = proc.stop()
    assert code == 0, proc.tail()
    # Structured JSON logs, like every other service's.
    first = json.loads(proc.logs().splitlines()[0])
    assert first["service"] == "operator"
    assert "level" in first

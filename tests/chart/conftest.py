"""The real Kubernetes API server tier: one API server (etcd + apiextensions-apiserver + front)
and one compliance process per test session, and a real kopf operator process per module."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadflow_core.testing import ServiceProcess, python_module, service_env
from tests.chart.rendering import CRD_FILE
from tests.k8s_apiserver.cluster import BUILD_SCRIPT, ApiServer


def _cached_root() -> Path:
    """The binaries `make k8s-apiserver` built (make test and make chart-test build them first:
    the first build takes several minutes, more than a test's timeout)."""
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), "path"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = f"no API server built yet ({proc.stderr.strip()}): run `make k8s-apiserver` first"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return Path(proc.stdout.strip())


@pytest.fixture(scope="session")
def apiserver() -> Iterator[ApiServer]:
    root = _cached_root()
    with tempfile.TemporaryDirectory(prefix="leadflow-k8s-") as tmp:
        server = ApiServer(root, Path(tmp))
        try:
            server.start()
            server.kubectl("apply", "-f", str(CRD_FILE))
            server.kubectl("wait", "--for=condition=Established", "crd/tenants.leadflow.dev", "--timeout=60s")
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def compliance_process(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = service_env(database_url, redis_url, redis_prefix, {"LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:0"})
    proc = ServiceProcess(
        "compliance", python_module("leadflow_compliance"), env, tmp_path_factory.mktemp("k8s-compliance")
    )
    try:
        proc.start(timeout=120)
    except BaseException:
        proc.kill()
        raise
    yield proc
    code = proc.stop()
    assert code == 0, proc.tail()

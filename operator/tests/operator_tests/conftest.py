"""A real compliance process, and a Kubernetes API emulator (kmock) in a thread of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from leadflow_core.testing import ServiceProcess, python_module, service_env

from .kube_emulator import KubeEmulator

# The usage timer's interval is fixed when the handlers are imported: short, for the tests.
os.environ.setdefault("LEADFLOW_OPERATOR_USAGE_INTERVAL_SECONDS", "1")


@pytest.fixture(scope="session")
def compliance_process(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = service_env(database_url, redis_url, redis_prefix, {"LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:0"})
    proc = ServiceProcess(
        "compliance",
        python_module("leadflow_compliance"),
        env,
        tmp_path_factory.mktemp("operator-compliance"),
    )
    try:
        proc.start(timeout=120)
    except BaseException:
        proc.kill()  # a start that timed out must not leave the process behind
        raise
    yield proc
    code = proc.stop()
    assert code == 0, proc.tail()


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    with KubeEmulator() as emulator:
        yield emulator

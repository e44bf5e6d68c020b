"""A real compliance server process (port 0) on the session's PostgreSQL and Redis; storage on
both of its databases (PostgreSQL, SQLite) for the repository's own tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import Engine

from leadflow.v1 import compliance_pb2, compliance_pb2_grpc, tenant_pb2, tenants_pb2, tenants_pb2_grpc
from leadflow_compliance.repository import Repository
from leadflow_compliance.rule_table import default_table
from leadflow_core.db import make_engine, make_sessionmaker
from leadflow_core.grpc_clients import channel
from leadflow_core.migrations import upgrade
from leadflow_core.tenant_spec import TenantSpec, to_proto
from leadflow_core.testing import ServiceProcess, python_module, service_env


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The compliance schema on this run's PostgreSQL database, then on a fresh SQLite file."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'compliance.db'}"
        upgrade("compliance", url)
    else:
        url = request.getfixturevalue("database_url")
    eng = make_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture
def repo(engine: Engine) -> Repository:
    return Repository(make_sessionmaker(engine))


@pytest.fixture(scope="session")
def compliance_server(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = service_env(database_url, redis_url, redis_prefix, {"LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:0"})
    proc = ServiceProcess(
        "compliance", python_module("leadflow_compliance"), env, tmp_path_factory.mktemp("compliance")
    )
    proc.start()
    load_state_lists(proc.addr)
    yield proc
    code = proc.stop()
    assert code == 0, proc.tail()


@pytest.fixture(scope="session")
def grpc_channel(compliance_server: ServiceProcess) -> Iterator[grpc.Channel]:
    ch = channel(compliance_server.addr, default_timeout=30.0)
    yield ch
    ch.close()


@pytest.fixture(scope="session")
def admin(grpc_channel: grpc.Channel) -> tenants_pb2_grpc.TenantAdminServiceStub:
    return tenants_pb2_grpc.TenantAdminServiceStub(grpc_channel)


@pytest.fixture(scope="session")
def compliance(grpc_channel: grpc.Channel) -> compliance_pb2_grpc.ComplianceServiceStub:
    return compliance_pb2_grpc.ComplianceServiceStub(grpc_channel)


# The state gates met by default, so other tests see the rule they are about: every state list
# loaded (holding only a number no test dials) but Wyoming's, which the not-loaded test needs,
# and tenants registered wherever registration gates calling (unless a test says otherwise).
UNLOADED_STATE_LIST = "WY"
UNDIALED_NUMBER = b"999,5550000\n"
GATED_REGISTRATIONS = [
    {"state": code}
    for code, row in default_table().states.items()
    if any(r.gates_calling for r in row.registration)
]


def load_state_lists(addr: str) -> None:
    ch = channel(addr, default_timeout=30.0)
    stub = compliance_pb2_grpc.ComplianceServiceStub(ch)
    for code, row in default_table().states.items():
        if row.dnc_list and code != UNLOADED_STATE_LIST:
            chunk = compliance_pb2.ImportDncRegistryChunk(
                data=UNDIALED_NUMBER, replace=True, list=f"state:{code}"
            )
            stub.ImportDncRegistry(iter([chunk]))
    ch.close()


def make_tenant(admin: tenants_pb2_grpc.TenantAdminServiceStub, **spec: object) -> tenant_pb2.Tenant:
    """Apply a fresh tenant (unique name) built the way the CLI and operator build them.

    Registered wherever registration gates calling, unless `policy` lists `registrations`."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    policy = dict(spec.get("policy") or {})  # type: ignore[call-overload]
    policy.setdefault("registrations", GATED_REGISTRATIONS)
    spec = {**spec, "policy": policy}
    tenant = to_proto(name, TenantSpec.model_validate(spec))
    return admin.ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=tenant)).tenant

"""Production refuses test hooks: no shifted clock, and a caller's evaluation instant is honoured
only by the what-if evaluation."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leadflow.v1 import compliance_pb2, compliance_pb2_grpc, tenants_pb2_grpc
from leadflow_core.grpc_clients import channel
from leadflow_core.testing import ServiceProcess, python_module, service_env
from leadflow_core.timestamps import from_proto, to_proto
from services.compliance.tests.conftest import make_tenant
from services.compliance.tests.test_compliance_grpc import OPEN, lead

LONG_AGO = datetime(2021, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def production(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = service_env(
        database_url,
        redis_url,
        redis_prefix,
        {"LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:0", "LEADFLOW_ENVIRONMENT": "production"},
    )
    proc = ServiceProcess(
        "compliance-prod", python_module("leadflow_compliance"), env, tmp_path_factory.mktemp("prod")
    ).start()
    yield proc
    proc.stop()


def test_production_refuses_to_start_with_a_test_clock(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = service_env(
        database_url,
        redis_url,
        redis_prefix,
        {
            "LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:0",
            "LEADFLOW_ENVIRONMENT": "production",
            "LEADFLOW_CLOCK_OFFSET_SECONDS": "3600",
        },
    )
    proc = ServiceProcess("compliance-shifted", python_module("leadflow_compliance"), env, tmp_path)
    proc.start(wait_port=False)
    assert proc.proc is not None
    try:
        code = proc.proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("a production compliance started with a shifted clock")
    assert code != 0
    assert "LEADFLOW_CLOCK_OFFSET_SECONDS is a test hook" in proc.logs()


def test_only_what_if_takes_the_callers_instant(production: ServiceProcess) -> None:
    ch = channel(production.addr, 30.0)
    admin = tenants_pb2_grpc.TenantAdminServiceStub(ch)
    stub = compliance_pb2_grpc.ComplianceServiceStub(ch)
    tenant = make_tenant(admin, displayName="prod")
    msg = lead(tenant.name)
    before = datetime.now(UTC) - timedelta(minutes=1)

    what_if = stub.Evaluate(
        compliance_pb2.EvaluateRequest(
            lead=msg, evaluate_at=to_proto(OPEN), purpose=compliance_pb2.EVALUATION_PURPOSE_WHAT_IF
        )
    ).decision
    assert from_proto(what_if.evaluated_at) == OPEN

    ingest = stub.Evaluate(
        compliance_pb2.EvaluateRequest(
            lead=msg, evaluate_at=to_proto(LONG_AGO), purpose=compliance_pb2.EVALUATION_PURPOSE_INGEST
        )
    ).decision
    evaluated = from_proto(ingest.evaluated_at)
    assert evaluated is not None
    assert evaluated >= before

    reserved = stub.ReserveCall(
        compliance_pb2.ReserveCallRequest(
            lead=msg, attempt_id=uuid.uuid4().hex, estimated_cost_usd="0.10", evaluate_at=to_proto(LONG_AGO)
        )
    ).decision
    evaluated = from_proto(reserved.evaluated_at)
    assert evaluated is not None
    assert evaluated >= before

    # The batch the dispatcher calls follows the same rule.
    batch = stub.ReserveCalls(
        compliance_pb2.ReserveCallsRequest(
            calls=[
                compliance_pb2.ReserveCallRequest(
                    lead=msg,
                    attempt_id=uuid.uuid4().hex,
                    estimated_cost_usd="0.10",
                    evaluate_at=to_proto(LONG_AGO),
                )
            ]
        )
    )
    assert batch.items[0].error_code == 0, batch.items[0].error_message
    evaluated = from_proto(batch.items[0].reply.decision.evaluated_at)
    assert evaluated is not None
    assert evaluated >= before
    ch.close()

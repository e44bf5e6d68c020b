"""A real dispatcher process on port 0 against this run's PostgreSQL database and Redis prefix.

Compliance is not running here: the dispatcher falls back to the deployment's defaults for
tenant policies, and the dial delays are set short through its settings.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine

from leadflow.v1 import decision_pb2, dispatcher_pb2_grpc, lead_pb2
from leadflow_core.db import make_engine, make_sessionmaker
from leadflow_core.grpc_clients import channel
from leadflow_core.testing import ServiceProcess, python_module, service_env
from leadflow_dispatcher.store import Store


@pytest.fixture(scope="module")
def dispatcher_proc(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    workdir: Path = tmp_path_factory.mktemp("dispatcher")
    env = service_env(
        database_url,
        redis_url,
        redis_prefix,
        {
            "LEADFLOW_DISPATCHER_ADDR": "127.0.0.1:0",
            "LEADFLOW_DISPATCHER_METRICS_ADDR": "127.0.0.1:0",
            "LEADFLOW_METRICS_PORT_FILE": str(workdir / "metrics.port"),
            # Nothing listens here: policies fall back to the defaults below.
            "LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:1",
            "LEADFLOW_DIAL_DELAY_SECONDS": json.dumps({"emergency": 0, "high": 0, "medium": 0, "low": 3600}),
            "LEADFLOW_JOB_LEASE_SECONDS": "2",
            "LEADFLOW_RELAY_INTERVAL_SECONDS": "0.2",
            "LEADFLOW_DEFAULT_RETRY_BACKOFF_SECONDS": "0",
        },
    )
    proc = ServiceProcess("dispatcher", python_module("leadflow_dispatcher"), env, workdir).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def stub(dispatcher_proc: ServiceProcess) -> Iterator[dispatcher_pb2_grpc.DispatcherServiceStub]:
    ch = channel(dispatcher_proc.addr)
    yield dispatcher_pb2_grpc.DispatcherServiceStub(ch)
    ch.close()


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def rds(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def make_lead(
    tenant: str,
    vendor_id: str = "",
    *,
    idem: str = "",
    phone: str = "+13055550123",
    email: str = "",
    urgency: int = lead_pb2.URGENCY_HIGH,
) -> lead_pb2.Lead:
    return lead_pb2.Lead(
        tenant=tenant,
        source=lead_pb2.SOURCE_API,
        vendor_lead_id=vendor_id,
        idempotency_key=idem,
        urgency=urgency,  # type: ignore[arg-type]
        contact=lead_pb2.Contact(first_name="Ada", email=email, phone=lead_pb2.Phone(e164=phone)),
    )


def dial_now() -> decision_pb2.Decision:
    return decision_pb2.Decision(decision_id=uuid.uuid4().hex, action=decision_pb2.DIAL_ACTION_DIAL_NOW)


# The stores' own tests (no dispatcher process): the dispatcher's engine as the service makes it.
# Modules that need another engine or store define their own.
@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    e = make_engine(database_url, pre_ping=False)
    yield e
    e.dispose()


@pytest.fixture(scope="module")
def store(engine: Engine) -> Store:
    return Store(make_sessionmaker(engine), postgres=True)

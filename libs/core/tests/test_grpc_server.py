"""The server bootstrap: port 0, health, reflection, request id, rich errors, graceful stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import redis.exceptions
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from leadflow.v1 import tenant_pb2, tenants_pb2, tenants_pb2_grpc
from leadflow_core import grpc_errors
from leadflow_core.grpc_clients import channel
from leadflow_core.grpc_server import RunningServer, create_server
from leadflow_core.request_context import bound, current_request_id
from leadflow_core.testing import wait_for

SERVICE = "leadflow.v1.TenantAdminService"


class _Tenants(tenants_pb2_grpc.TenantAdminServiceServicer):
    def __init__(self) -> None:
        self.seen_request_ids: list[str] = []
        self.release = threading.Event()

    def GetTenant(
        self, request: tenants_pb2.GetTenantRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.GetTenantResponse:
        self.seen_request_ids.append(current_request_id())
        if request.name == "slow":
            self.release.wait(10)
        if request.name == "redis-down":
            raise redis.exceptions.ConnectionError("Connection refused")
        if request.name == "bug":
            raise RuntimeError("a bug of ours")
        if not request.name:
            grpc_errors.invalid_argument(context, "name", "must not be empty")
        return tenants_pb2.GetTenantResponse(tenant=tenant_pb2.Tenant(name=request.name))


@pytest.fixture
def served() -> Iterator[tuple[RunningServer, _Tenants]]:
    impl = _Tenants()  # type: ignore[abstract]
    running = create_server(
        "127.0.0.1:0",
        [lambda s: tenants_pb2_grpc.add_TenantAdminServiceServicer_to_server(impl, s)],
        [SERVICE],
    )
    yield running, impl
    running.stop(0)


def test_binds_port_zero_and_serves_health_and_reflection(served: tuple[RunningServer, _Tenants]) -> None:
    running, _ = served
    assert running.port > 0
    ch = channel(f"127.0.0.1:{running.port}")
    health: Any = health_pb2_grpc.HealthStub(ch)
    status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE)).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    refl: Any = reflection_pb2_grpc.ServerReflectionStub(ch)
    replies = list(
        refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    )
    names = {s.name for s in replies[0].list_services_response.service}
    assert SERVICE in names
    assert "grpc.health.v1.Health" in names


def test_request_id_travels_and_errors_carry_field_details(served: tuple[RunningServer, _Tenants]) -> None:
    running, impl = served
    stub = tenants_pb2_grpc.TenantAdminServiceStub(channel(f"127.0.0.1:{running.port}"))
    with bound("rid-42"):
        stub.GetTenant(tenants_pb2.GetTenantRequest(name="acme"))
    assert impl.seen_request_ids == ["rid-42"]
    with pytest.raises(grpc.RpcError) as err:
        stub.GetTenant(tenants_pb2.GetTenantRequest(name=""))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_errors.field_violations(err.value) == [("name", "must not be empty")]


def test_a_dependency_outage_is_unavailable_and_a_bug_is_not(served: tuple[RunningServer, _Tenants]) -> None:
    """Redis or PostgreSQL down is UNAVAILABLE, which callers retry; never UNKNOWN, which a
    caller must read as a crash of ours (and a worker would dead-letter sooner)."""
    running, _ = served
    stub = tenants_pb2_grpc.TenantAdminServiceStub(channel(f"127.0.0.1:{running.port}"))
    with pytest.raises(grpc.RpcError) as err:
        stub.GetTenant(tenants_pb2.GetTenantRequest(name="redis-down"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as err:
        stub.GetTenant(tenants_pb2.GetTenantRequest(name="bug"))
    assert err.value.code() == grpc.StatusCode.UNKNOWN


def test_graceful_stop_finishes_in_flight_calls_and_reports_not_serving(
    served: tuple[RunningServer, _Tenants],
) -> None:
    running, impl = served
    ch = channel(f"127.0.0.1:{running.port}", default_timeout=10)
    stub = tenants_pb2_grpc.TenantAdminServiceStub(ch)
    future = stub.GetTenant.future(tenants_pb2.GetTenantRequest(name="slow"))
    # The call is in flight once the servicer has seen it.
    wait_for(lambda: impl.seen_request_ids, timeout=10)
    stopper = threading.Thread(target=running.stop, args=(10,))
    stopper.start()
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    check = health_pb2.HealthCheckRequest(service=SERVICE)
    wait_for(lambda: running.health.Check(check, None).status == not_serving, timeout=10)  # type: ignore[arg-type]
    impl.release.set()
    assert future.result().tenant.name == "slow"
    stopper.join(15)
    assert not stopper.is_alive()


def test_plaintext_health_port_serves_health_only() -> None:
    impl = _Tenants()  # type: ignore[abstract]
    running = create_server(
        "127.0.0.1:0",
        [lambda s: tenants_pb2_grpc.add_TenantAdminServiceServicer_to_server(impl, s)],
        [SERVICE],
        health_addr="127.0.0.1:0",
    )
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{running.health_port}")
        health: Any = health_pb2_grpc.HealthStub(ch)
        status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        tenants: Any = tenants_pb2_grpc.TenantAdminServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            tenants.GetTenant(tenants_pb2.GetTenantRequest(name="a"), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert impl.seen_request_ids == []
        ch.close()
    finally:
        running.stop(0)


def test_a_refused_request_is_one_log_line_without_a_traceback(
    served: tuple[RunningServer, _Tenants], monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow_core import grpc_interceptors

    logged: list[tuple[str, str]] = []

    class Recorder:
        def exception(self, event: str, **_: object) -> None:
            logged.append(("exception", event))

        def info(self, event: str, **_: object) -> None:
            logged.append(("info", event))

    monkeypatch.setattr(grpc_interceptors, "log", Recorder())
    running, _ = served
    stub = tenants_pb2_grpc.TenantAdminServiceStub(channel(f"127.0.0.1:{running.port}"))
    with pytest.raises(grpc.RpcError) as err:
        stub.GetTenant(tenants_pb2.GetTenantRequest(name=""))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert logged == [("info", "rpc_error")]

"""Mutual TLS and the policy table against a real server serving every RPC in proto/.

The server registers a stand-in handler for every method of every service in the generated
descriptors, behind the production credentials and interceptors. Every identity calls every
method: allowed calls reach the handler, the rest are refused before it. A new RPC without a
policy entry fails `test_every_rpc_has_a_policy_entry`.
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

import leadflow.v1
from leadflow_core import dev_ca, tls
from leadflow_core.access_policy import (
    CLI,
    DIAL_WORKER,
    GATEWAY,
    IDENTITIES,
    JOBS_WORKER,
    OPERATOR,
    POLICY,
    is_allowed,
)
from leadflow_core.grpc_authz import audit_actor
from leadflow_core.grpc_server import RunningServer, create_server


def _services() -> list[ServiceDescriptor]:
    found: dict[str, ServiceDescriptor] = {}
    for info in pkgutil.iter_modules(leadflow.v1.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"leadflow.v1.{info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                found[service.full_name] = service
    return [found[k] for k in sorted(found)]


SERVICES = _services()
METHODS: list[MethodDescriptor] = [m for s in SERVICES for m in s.methods]


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


@dataclass
class _Recorder:
    calls: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, method: str) -> None:
        with self.lock:
            self.calls.append((method, audit_actor("ada")))


def _generic_handler(service: ServiceDescriptor, recorder: _Recorder) -> grpc.GenericRpcHandler:
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        path = _path(method)

        def reply(path: str = path, response_cls: Any = response_cls) -> Any:
            recorder.note(path)
            return response_cls()

        kw: dict[str, Any] = {
            "request_deserializer": request_cls.FromString,
            "response_serializer": response_cls.SerializeToString,
        }
        if method.client_streaming and method.server_streaming:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                lambda it, ctx, reply=reply: iter([reply()]), **kw
            )
        elif method.client_streaming:
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(
                lambda it, ctx, reply=reply: reply(), **kw
            )
        elif method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                lambda req, ctx, reply=reply: iter([reply()]), **kw
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                lambda req, ctx, reply=reply: reply(), **kw
            )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


@pytest.fixture(scope="module")
def mesh_server() -> Iterator[tuple[RunningServer, _Recorder]]:
    recorder = _Recorder()
    generic = tuple(_generic_handler(svc, recorder) for svc in SERVICES)

    def register(server: grpc.Server) -> None:
        server.add_generic_rpc_handlers(generic)

    running = create_server("127.0.0.1:0", [register], [s.full_name for s in SERVICES])
    yield running, recorder
    running.stop(0)


def _call(ch: grpc.Channel, method: MethodDescriptor) -> grpc.StatusCode:
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    path = _path(method)
    ser, de = request_cls.SerializeToString, response_cls.FromString
    try:
        if method.client_streaming and method.server_streaming:
            list(ch.stream_stream(path, ser, de)(iter([request_cls()]), timeout=10))
        elif method.client_streaming:
            ch.stream_unary(path, ser, de)(iter([request_cls()]), timeout=10)
        elif method.server_streaming:
            list(ch.unary_stream(path, ser, de)(request_cls(), timeout=10))
        else:
            ch.unary_unary(path, ser, de)(request_cls(), timeout=10)
    except grpc.RpcError as err:
        code: grpc.StatusCode = err.code()
        return code
    return grpc.StatusCode.OK


def _channel(port: int, credentials: grpc.ChannelCredentials) -> grpc.Channel:
    # A private subchannel pool: a failed handshake on one channel must not be reused by the next.
    return grpc.secure_channel(
        f"127.0.0.1:{port}", credentials, options=[("grpc.use_local_subchannel_pool", 1)]
    )


def test_every_rpc_has_a_policy_entry() -> None:
    paths = {_path(m) for m in METHODS}
    missing = sorted(paths - set(POLICY))
    assert not missing, f"RPCs without an entry in leadflow_core.access_policy.POLICY: {missing}"
    stale = sorted(set(POLICY) - paths)
    assert not stale, f"policy entries for RPCs that no longer exist: {stale}"
    unknown = sorted({i for allowed in POLICY.values() for i in allowed} - set(IDENTITIES))
    assert not unknown


@pytest.mark.parametrize("identity", IDENTITIES)
def test_matrix_every_identity_by_every_method(
    identity: str, mesh_server: tuple[RunningServer, _Recorder]
) -> None:
    running, recorder = mesh_server
    ch = _channel(running.port, tls.channel_credentials(identity))
    outcomes = {}
    for method in METHODS:
        before = len(recorder.calls)
        code = _call(ch, method)
        reached = len(recorder.calls) > before
        outcomes[_path(method)] = (code, reached)
    ch.close()
    for path, (code, reached) in outcomes.items():
        if identity in POLICY[path]:
            assert (code, reached) == (grpc.StatusCode.OK, True), path
        else:
            assert (code, reached) == (grpc.StatusCode.PERMISSION_DENIED, False), path
    # Health stays open to every authenticated peer.
    ch = _channel(running.port, tls.channel_credentials(identity))
    health: Any = health_pb2_grpc.HealthStub(ch)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == 1
    ch.close()


def test_the_table_says_what_each_component_needs() -> None:
    # The few decisions that matter most, spelled out so a careless edit shows up here.
    assert POLICY["/leadflow.v1.ComplianceService/ReserveCall"] == {DIAL_WORKER}
    assert POLICY["/leadflow.v1.TenantAdminService/CreateApiKey"] == {CLI, OPERATOR}
    assert POLICY["/leadflow.v1.TenantAdminService/AuthenticateApiKey"] == {GATEWAY}
    assert POLICY["/leadflow.v1.TenantAdminService/AuthenticateApiKeys"] == {GATEWAY}
    assert POLICY["/leadflow.v1.TenantAdminService/RevokeApiKey"] == {CLI}
    assert POLICY["/leadflow.v1.DispatcherService/SubmitLead"] == {GATEWAY}
    assert not is_allowed("/leadflow.v1.DispatcherService/GetLead", [GATEWAY])
    assert not is_allowed("/leadflow.v1.TenantAdminService/ApplyTenant", [JOBS_WORKER])
    assert is_allowed("/leadflow.v1.TenantAdminService/ApplyTenant", [OPERATOR])
    assert not is_allowed("/leadflow.v1.NotInTheTable/Anything", IDENTITIES)
    assert not is_allowed("/grpc.health.v1.Health/Check", [])


def test_audit_actor_is_the_verified_identity(mesh_server: tuple[RunningServer, _Recorder]) -> None:
    running, recorder = mesh_server
    method = next(m for m in METHODS if m.name == "AddDoNotCall")
    other = next(m for m in METHODS if m.name == "RecordEvent")
    for identity, m in ((CLI, method), (JOBS_WORKER, other)):
        ch = _channel(running.port, tls.channel_credentials(identity))
        assert _call(ch, m) == grpc.StatusCode.OK
        ch.close()
    actors = [actor for path, actor in recorder.calls if path in (_path(method), _path(other))][-2:]
    # A CLI user's own name is kept, marked claimed; a service's claim is ignored.
    assert actors == ["cli (claimed: ada)", "jobs-worker"]


def _refused_everywhere(port: int, credentials: grpc.ChannelCredentials, recorder: _Recorder) -> None:
    ch = _channel(port, credentials)
    before = len(recorder.calls)
    codes = {_call(ch, m) for m in METHODS}
    ch.close()
    # The handshake fails, so grpc reports the channel unusable; nothing reaches a handler.
    assert codes <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED}, codes
    assert len(recorder.calls) == before


def test_no_client_certificate_is_refused(
    mesh_server: tuple[RunningServer, _Recorder], tls_dir: Path
) -> None:
    running, recorder = mesh_server
    creds = grpc.ssl_channel_credentials((tls_dir / "ca.crt").read_bytes())
    _refused_everywhere(running.port, creds, recorder)
    ch = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    assert {_call(ch, m) for m in METHODS[:3]} == {grpc.StatusCode.UNAVAILABLE}
    ch.close()


def test_certificate_from_another_ca_is_refused(
    mesh_server: tuple[RunningServer, _Recorder], tls_dir: Path, tmp_path: Path
) -> None:
    running, recorder = mesh_server
    dev_ca.ensure(tmp_path, {CLI: (CLI,)})
    creds = grpc.ssl_channel_credentials(
        root_certificates=(tls_dir / "ca.crt").read_bytes(),
        private_key=(tmp_path / "cli.key").read_bytes(),
        certificate_chain=(tmp_path / "cli.crt").read_bytes(),
    )
    _refused_everywhere(running.port, creds, recorder)


def test_certificate_without_a_leadflow_identity_is_refused(
    mesh_server: tuple[RunningServer, _Recorder], tls_dir: Path, tmp_path: Path
) -> None:
    running, recorder = mesh_server
    # Signed by our CA but naming no spiffe://leadflow.local/ identity.
    for name in ("ca.crt", "ca.key"):
        shutil.copy(tls_dir / name, tmp_path / name)
    dev_ca.issue(tmp_path, "stranger", ())
    creds = grpc.ssl_channel_credentials(
        root_certificates=(tls_dir / "ca.crt").read_bytes(),
        private_key=(tmp_path / "stranger.key").read_bytes(),
        certificate_chain=(tmp_path / "stranger.crt").read_bytes(),
    )
    ch = _channel(running.port, creds)
    before = len(recorder.calls)
    codes = {_call(ch, m) for m in METHODS}
    ch.close()
    assert codes == {grpc.StatusCode.UNAUTHENTICATED}
    assert len(recorder.calls) == before


def test_server_picks_up_rotated_certificates_without_restart(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    dev_ca.ensure(old, {"compliance": ("compliance",), CLI: (CLI,)})
    dev_ca.ensure(new, {"compliance": ("compliance",), CLI: (CLI,)})
    live = tmp_path / "live"
    live.mkdir()
    for name in ("ca.crt", "compliance.crt", "compliance.key"):
        shutil.copy(old / name, live / name)
    files = tls.TlsFiles(live / "ca.crt", live / "compliance.crt", live / "compliance.key")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(_Healthy(), server)
    port = server.add_secure_port("127.0.0.1:0", tls.server_credentials(files))
    server.start()
    try:

        def check(ca_dir: Path) -> grpc.StatusCode:
            creds = grpc.ssl_channel_credentials(
                (ca_dir / "ca.crt").read_bytes(),
                (ca_dir / "cli.key").read_bytes(),
                (ca_dir / "cli.crt").read_bytes(),
            )
            ch = _channel(port, creds)
            stub: Any = health_pb2_grpc.HealthStub(ch)
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                return grpc.StatusCode.OK
            except grpc.RpcError as err:
                code: grpc.StatusCode = err.code()
                return code
            finally:
                ch.close()

        assert check(old) == grpc.StatusCode.OK
        assert check(new) == grpc.StatusCode.UNAVAILABLE
        # cert-manager replaces the mounted files; the server is not restarted.
        for name in ("ca.crt", "compliance.key", "compliance.crt"):
            shutil.copy(new / name, live / name)
        assert check(new) == grpc.StatusCode.OK
        assert check(old) == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


class _Healthy(health_pb2_grpc.HealthServicer):
    def Check(self, request: Any, context: Any) -> health_pb2.HealthCheckResponse:
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

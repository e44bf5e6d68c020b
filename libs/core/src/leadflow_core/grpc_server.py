"""gRPC server bootstrap: mutual TLS, authorization, health, reflection, request context, port 0,
graceful SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from leadflow_core import tls
from leadflow_core.grpc_authz import AsyncAuthorizationServerInterceptor, AuthorizationServerInterceptor
from leadflow_core.grpc_interceptors import RequestContextServerInterceptor
from leadflow_core.grpc_metrics import MetricsServerInterceptor
from leadflow_core.logs import get_logger
from leadflow_core.settings import CommonSettings

log = get_logger("leadflow.server")

# Registers a servicer on a server, e.g. `lambda s: add_FooServicer_to_server(impl, s)`.
Registration = Callable[[grpc.Server], None]


@dataclass(frozen=True)
class ServerSecurity:
    """What every Leadflow gRPC server needs: mTLS credentials and the authorization interceptor.

    Sync servers take `interceptors`; grpc.aio servers take `aio_interceptors`; both bind with
    `server.add_secure_port(addr, security.credentials)`.
    """

    credentials: grpc.ServerCredentials
    interceptors: tuple[grpc.ServerInterceptor, ...]
    aio_interceptors: tuple[grpc.aio.ServerInterceptor, ...]


def server_security(identity: str | None = None) -> ServerSecurity:
    """Credentials from this process's TLS files (see `leadflow_core.tls`) and the policy check."""
    return ServerSecurity(
        credentials=tls.server_credentials(tls.files_for(identity)),
        interceptors=(AuthorizationServerInterceptor(),),
        aio_interceptors=(AsyncAuthorizationServerInterceptor(),),
    )


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: tuple[str, ...]
    health_server: grpc.Server | None = None
    health_port: int = 0

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names):
            self.health.set(name, status)

    def stop(self, grace: float) -> None:
        # Health first, so load balancers stop sending before in-flight calls are drained.
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self.health_server is not None:
            self.health_server.stop(0).wait()


def create_server(
    addr: str,
    registrations: Iterable[Registration],
    service_names: Iterable[str],
    max_workers: int = 32,
    interceptors: Iterable[grpc.ServerInterceptor] = (),
    security: ServerSecurity | None = None,
    health_addr: str | None = None,
) -> RunningServer:
    """Start a server on `addr` ("host:0" picks a free port) and return it with its port."""
    security = security or server_security()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        interceptors=[
            RequestContextServerInterceptor(),
            MetricsServerInterceptor(),
            *security.interceptors,
            *interceptors,
        ],
        options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 * 1024 * 1024)],
    )
    for register in registrations:
        register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = tuple(service_names)
    reflection.enable_server_reflection((*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_secure_port(addr, security.credentials)
    if port == 0:
        raise RuntimeError(f"could not bind {addr}")
    server.start()
    running = RunningServer(server=server, port=port, health=health_servicer, service_names=names)
    probe_addr = CommonSettings().health_addr if health_addr is None else health_addr
    if probe_addr:
        # Health only, nothing else registered: kubelet probes reach it without a certificate.
        probe = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"))
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probe)
        running.health_port = probe.add_insecure_port(probe_addr)
        probe.start()
        running.health_server = probe
    running.set_serving(True)
    return running


def write_port_file(path: str, port: int) -> None:
    """Atomically publish the bound port so a supervisor or test can find the server."""
    if not path:
        return
    target = Path(path)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, target)


def serve_until_signal(
    running: RunningServer, grace: float, on_stop: Callable[[], None] | None = None
) -> None:
    """Block until SIGTERM or SIGINT, then shut down gracefully."""
    stop = threading.Event()

    def _handler(signum: int, _: FrameType | None) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    log.info("serving", port=running.port, services=list(running.service_names))
    stop.wait()
    running.stop(grace)
    if on_stop is not None:
        on_stop()
    log.info("stopped")

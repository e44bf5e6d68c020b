"""`python -m leadflow_gateway`: serve on LEADFLOW_GATEWAY_ADDR (port 0 allowed); SIGTERM drains.

With `LEADFLOW_GATEWAY_PROCESSES=N` (0 = one per core) the parent binds the socket once and forks
N servers that accept on it, so one Python process per core answers HTTP; the parent forwards
SIGTERM/SIGINT to them and exits when they have drained."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn

from leadflow_core import tls
from leadflow_core.grpc_server import write_port_file
from leadflow_core.logs import configure, get_logger
from leadflow_core.metrics_server import bound_port, start_metrics_server
from leadflow_gateway.app import create_app
from leadflow_gateway.http_limits import EdgeLimits, guarded_protocol
from leadflow_gateway.settings import GatewaySettings

log = get_logger("leadflow.gateway")


def bind(addr: str) -> socket.socket:
    """The listening socket. Created with IPPROTO_TCP (asyncio sets TCP_NODELAY on accepted sockets
    only when the listener's protocol says TCP; with protocol 0 every keep-alive response body waited
    ~40 ms for the client's delayed ACK) and with TCP_NODELAY set, which Linux copies to accepted
    sockets whatever loop serves them."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, int(port)))
    sock.listen(2048)
    return sock


class GatewayServer(uvicorn.Server):
    """Publishes the port only once the app's lifespan has started and the socket is served."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT start uvicorn's graceful shutdown; unlike uvicorn's own handler this one
        does not re-raise the signal afterwards, so a drained gateway exits 0 like our other services."""
        handled = (signal.SIGTERM, signal.SIGINT)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


def _started(settings: GatewaySettings, port: int) -> None:
    write_port_file(settings.port_file, port)
    log.info("serving", port=port, pid=os.getpid())


def http_protocol(settings: GatewaySettings) -> type[asyncio.Protocol] | str:
    """httptools with the edge's limits (http_limits), or uvicorn's h11 without them."""
    if settings.gateway_http == "h11":
        return "h11"
    return guarded_protocol(
        EdgeLimits(
            max_url_bytes=settings.edge_max_url_bytes,
            max_head_bytes=settings.edge_max_head_bytes,
            max_headers=settings.edge_max_headers,
            head_timeout=settings.edge_head_timeout_seconds,
            body_timeout=settings.edge_body_timeout_seconds,
        )
    )


def server_config(settings: GatewaySettings) -> uvicorn.Config:
    """The HTTP stack: uvloop and httptools (the C parsers) with the edge's limits, no access log,
    no server header."""
    return uvicorn.Config(
        create_app(settings),
        loop=settings.gateway_loop,
        http=http_protocol(settings),
        timeout_keep_alive=settings.edge_keep_alive_seconds,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        proxy_headers=True,
    )


def make_server(settings: GatewaySettings, sock: socket.socket) -> GatewayServer:
    port = int(sock.getsockname()[1])
    return GatewayServer(server_config(settings), lambda: _started(settings, port))


async def serve(settings: GatewaySettings, sock: socket.socket | None = None) -> None:
    sock = sock if sock is not None else bind(settings.gateway_addr)
    # uvicorn installs its own SIGTERM/SIGINT handlers: stop accepting, finish in-flight requests.
    await make_server(settings, sock).serve(sockets=[sock])
    log.info("stopped")


def _serve_metrics(settings: GatewaySettings) -> None:
    # /metrics has a port of its own, never the public one (the chart exposes only the public).
    metrics = start_metrics_server(settings.gateway_metrics_addr)
    write_port_file(settings.metrics_port_file, bound_port(metrics))


def _run(settings: GatewaySettings, sock: socket.socket, metrics: bool = True) -> None:
    if metrics:
        _serve_metrics(settings)
    # uvloop when configured: uvicorn names the loop factory, asyncio.Runner uses it.
    with asyncio.Runner(loop_factory=server_config(settings).get_loop_factory()) as runner:
        runner.run(serve(settings, sock))


def _supervise(settings: GatewaySettings, sock: socket.socket, processes: int) -> int:
    """Fork `processes` servers on the one socket; forward stop signals; exit when all have."""
    children: list[int] = []
    for index in range(processes):
        pid = os.fork()
        if pid == 0:  # child: serve until told to stop
            code = 0
            try:
                # One metrics port per pod: only the first server binds it.
                _run(settings, sock, metrics=index == 0)
            except BaseException:
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _: FrameType | None) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    for child in children:
        _, status = os.waitpid(child, 0)
        worst = max(worst, os.waitstatus_to_exitcode(status) != 0)
    return worst


def main() -> None:
    settings = GatewaySettings()
    configure("gateway", settings.log_level)
    tls.set_component("gateway")
    sock = bind(settings.gateway_addr)
    processes = settings.gateway_processes or os.cpu_count() or 1
    if processes <= 1:
        _run(settings, sock)
        return
    sys.exit(_supervise(settings, sock, processes))


if __name__ == "__main__":
    main()

"""`python -m leadflow_gateway`: serve on LEADFLOW_GATEWAY_ADDR (port 0 allowed); SIGTERM drains."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator

import uvicorn

from leadflow_core import tls
from leadflow_core.grpc_server import write_port_file
from leadflow_core.logs import configure, get_logger
from leadflow_core.metrics_server import bound_port, start_metrics_server
from leadflow_gateway.app import create_app
from leadflow_gateway.settings import GatewaySettings

log = get_logger("leadflow.gateway")


def bind(addr: str) -> socket.socket:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(2048)
    return sock


class _Server(uvicorn.Server):
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
    log.info("serving", port=port)


async def serve(settings: GatewaySettings) -> None:
    # /metrics has a port of its own, never the public one (the chart exposes only the public).
    metrics = start_metrics_server(settings.gateway_metrics_addr)
    write_port_file(settings.metrics_port_file, bound_port(metrics))
    sock = bind(settings.gateway_addr)
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        create_app(settings),
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        proxy_headers=True,
    )
    # uvicorn installs its own SIGTERM/SIGINT handlers: stop accepting, finish in-flight requests.
    server = _Server(config, lambda: _started(settings, port))
    await server.serve(sockets=[sock])
    log.info("stopped")


def main() -> None:
    settings = GatewaySettings()
    configure("gateway", settings.log_level)
    tls.set_component("gateway")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()

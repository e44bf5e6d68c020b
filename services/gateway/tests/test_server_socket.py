"""The gateway's HTTP server sets TCP_NODELAY on every accepted connection.

Without it, a keep-alive response whose headers and body go out in two writes waits ~40 ms for
the client's delayed ACK (Nagle). The test serves the real app on the real listening socket and
server stack, opens a keep-alive connection, and reads the option on the server's end of it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Literal

import pytest
import uvloop

from leadflow_gateway.__main__ import GatewayServer, bind, server_config
from leadflow_gateway.settings import GatewaySettings

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


async def _nodelay_on_served_connections(settings: GatewaySettings, sock: socket.socket) -> list[int]:
    started = asyncio.Event()
    server = GatewayServer(server_config(settings), started.set)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await started.wait()
        port = sock.getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):  # two requests on one keep-alive connection
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        served = list(server.server_state.connections)
        options = [
            proto.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            for proto in served
        ]
        writer.close()
        return options
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_accepted_connections_have_tcp_nodelay(loop: Literal["asyncio", "uvloop"], redis_url: str) -> None:
    settings = GatewaySettings(gateway_addr="127.0.0.1:0", redis_url=redis_url, gateway_loop=loop)
    sock = bind(settings.gateway_addr)
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        options = runner.run(_nodelay_on_served_connections(settings, sock))
    assert len(options) == 1
    assert all(option != 0 for option in options)


def test_the_listening_socket_is_tcp() -> None:
    sock = bind("127.0.0.1:0")
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()

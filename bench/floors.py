"""What this machine's own stack does with no product code in it, measured in the same run.

- `http`: a bare ASGI app on the gateway's server stack (its listening socket, uvloop, httptools,
  the same number of processes): parse the JSON body, answer 202. Loaded by the same wrk command.
- `grpc`: a grpc.aio echo server and client.
- `postgres`: one-row INSERT + COMMIT loops on N connections.
- `redis`: pipelined SETs.

`python -m bench.floors http|grpc-echo PORT_FILE` serves one of the two servers for the benchmark.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import orjson
import psycopg
import redis
import uvicorn

from leadflow_core.grpc_server import write_port_file

ECHO_METHOD = "/bench.Echo/Echo"

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def hello_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Parse the JSON body and answer 202 with a lead id, like the gateway without any of its work."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if body.startswith(b"{"):
        orjson.loads(body)
    answer = orjson.dumps({"lead_id": uuid.uuid4().hex, "duplicate": False})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def serve_http(port_file: str) -> None:
    """The gateway's own socket and server settings, with `hello_app` instead of the gateway."""
    from leadflow_gateway.__main__ import GatewayServer, bind, http_protocol
    from leadflow_gateway.settings import GatewaySettings

    settings = GatewaySettings()
    sock = bind("127.0.0.1:0")
    config = uvicorn.Config(
        hello_app,
        loop=settings.gateway_loop,
        http=http_protocol(settings),
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )
    port = int(sock.getsockname()[1])
    processes = settings.gateway_processes or os.cpu_count() or 1
    for _ in range(processes - 1):
        if os.fork() == 0:
            break
    server = GatewayServer(config, lambda: write_port_file(port_file, port))
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(server.serve(sockets=[sock]))


async def _echo_server(port_file: str) -> None:
    server = grpc.aio.server()

    async def echo(request: bytes, _: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    write_port_file(port_file, port)
    await server.wait_for_termination()


def grpc_echo_rate(addr: str, seconds: float, concurrency: int) -> float:
    """Calls per second of a grpc.aio client with `concurrency` calls in flight."""

    async def run() -> int:
        async with grpc.aio.insecure_channel(addr) as ch:
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = ch.unary_unary(ECHO_METHOD)
            payload = b"x" * 300
            for _ in range(50):  # warm up the connection
                await call(payload)
            done = 0
            deadline = time.perf_counter() + seconds

            async def loop() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    await call(payload)
                    done += 1

            await asyncio.gather(*(loop() for _ in range(concurrency)))
            return done

    t0 = time.perf_counter()
    calls = asyncio.run(run())
    return calls / (time.perf_counter() - t0)


def postgres_commit_rate(dsn: str, seconds: float, connections: int) -> float:
    """One-row INSERT + COMMIT per transaction on `connections` connections (threads)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, v text NOT NULL)")
    counts = [0] * connections
    deadline = time.perf_counter() + seconds

    def loop(k: int) -> None:
        with psycopg.connect(dsn) as conn:
            while time.perf_counter() < deadline:
                conn.execute("INSERT INTO bench_floor (v) VALUES (%s)", ("x",))
                conn.commit()
                counts[k] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE bench_floor")
    return sum(counts) / elapsed


def redis_pipelined_rate(url: str, prefix: str, seconds: float, depth: int = 100) -> float:
    client = redis.Redis.from_url(url)
    key = f"{prefix}floor"
    done = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        pipe = client.pipeline(transaction=False)
        for i in range(depth):
            pipe.set(f"{key}:{i}", "x")
        pipe.execute()
        done += depth
    elapsed = time.perf_counter() - t0
    client.delete(*(f"{key}:{i}" for i in range(depth)))
    client.close()
    return done / elapsed


def main() -> None:
    what, port_file = sys.argv[1], sys.argv[2]
    if what == "http":
        serve_http(port_file)
    elif what == "grpc-echo":
        asyncio.run(_echo_server(port_file))
    else:
        raise SystemExit(f"unknown floor server {what!r}")


if __name__ == "__main__":
    main()

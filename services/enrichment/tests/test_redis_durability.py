"""A 2xx means durable: the mesh on a private Redis (AOF on, its own --dir, stopped by pid) that
is killed and restarted, or flushed, in the middle of a load. Every accepted lead completes."""

from __future__ import annotations

import signal
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from leadflow.v1 import dispatcher_pb2_grpc
from leadflow_core.testing import wait_for
from tests.e2e.mesh import Mesh, module_mesh
from tests.e2e.scenario import clock_env

from .test_workers import FAST, all_done, kinds, new_tenant, submit

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _pings(client), timeout=20, what="private redis")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    with tempfile.TemporaryDirectory(prefix="leadflow-redis-") as tmp:
        server = PrivateRedis(Path(tmp))
        server.start()
        yield server
        server.kill()


@pytest.fixture(scope="module")
def mesh(module_database_url: str, private_redis: PrivateRedis) -> Iterator[Mesh]:
    prefix = f"d{uuid.uuid4().hex[:6]}:"
    with module_mesh(module_database_url, private_redis.url, prefix, "durable", {**clock_env(), **FAST}) as m:
        yield m


def _load(mesh: Mesh, tenant: str, tag: str, n: int, midway: threading.Event) -> list[str]:
    def one(i: int) -> str:
        if i == n // 3:
            midway.set()
        return submit(mesh, tenant, i, tag)

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


def _check_all_complete(
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, tenant: str, ids: list[str]
) -> None:
    wait_for(
        lambda: all_done(dispatcher, tenant, ids, "enriched", "synced", "dialed"),
        timeout=180,
        what="every lead",
    )
    for lead_id in ids:
        assert kinds(dispatcher, tenant, lead_id).count("dialed") == 1


def test_redis_restarted_mid_load(mesh: Mesh, private_redis: PrivateRedis) -> None:
    tenant = new_tenant(mesh)
    midway = threading.Event()

    def restart() -> None:
        midway.wait(60)
        private_redis.kill()
        private_redis.start()

    t = threading.Thread(target=restart)
    t.start()
    ids = _load(mesh, tenant, "restart", 40, midway)
    t.join()
    _check_all_complete(mesh.dispatcher(), tenant, ids)


def test_redis_flushed_mid_load(mesh: Mesh, private_redis: PrivateRedis) -> None:
    tenant = new_tenant(mesh)
    midway = threading.Event()

    def flush() -> None:
        midway.wait(60)
        redis.Redis.from_url(private_redis.url).flushall()

    t = threading.Thread(target=flush)
    t.start()
    ids = _load(mesh, tenant, "flush", 40, midway)
    t.join()
    _check_all_complete(mesh.dispatcher(), tenant, ids)

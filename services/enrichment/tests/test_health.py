"""The worker's probe endpoints, over real HTTP."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

from leadflow_core.testing import ServiceProcess, python_module, service_env
from leadflow_enrichment.health import HealthServer, workers_alive


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_probes_follow_their_checks() -> None:
    state = {"alive": True, "ready": True}

    def broken() -> bool:
        raise ConnectionError("redis down")

    server = HealthServer("127.0.0.1:0", lambda: state["alive"], lambda: state["ready"]).start()
    failing = HealthServer("127.0.0.1:0", lambda: True, broken).start()
    try:
        assert status(server.port, "/healthz") == 200
        assert status(server.port, "/readyz") == 200
        state["ready"] = False
        assert status(server.port, "/readyz") == 503
        assert status(server.port, "/healthz") == 200, "not ready is no reason to restart"
        state["alive"] = False
        assert status(server.port, "/healthz") == 503
        assert status(server.port, "/nope") == 404
        assert status(failing.port, "/readyz") == 503, "a check that raises is unhealthy"
    finally:
        server.stop()
        failing.stop()


class _Worker:
    def __init__(self, threads: list[threading.Thread]) -> None:
        self.consumers = {"q": threads[0]}
        self.workers = threads[1:]


def test_workers_alive_needs_every_thread() -> None:
    stop = threading.Event()
    running = [threading.Thread(target=stop.wait) for _ in range(2)]
    for t in running:
        t.start()
    try:
        assert workers_alive([_Worker(running)])
        dead = threading.Thread(target=lambda: None)
        dead.start()
        dead.join()
        assert not workers_alive([_Worker([running[0], dead])])
    finally:
        stop.set()
        for t in running:
            t.join()


def test_a_worker_process_answers_its_probes(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = service_env(
        database_url, redis_url, redis_prefix, {"LEADFLOW_WORKER_HEALTH_ADDR": f"127.0.0.1:{port}"}
    )
    proc = ServiceProcess(
        "worker-health",
        python_module("leadflow_enrichment", "--queues", "enrich", "--threads", "1"),
        env,
        tmp_path,
    )
    proc.start(timeout=120)  # the port file says it consumes
    try:
        assert status(port, "/healthz") == 200
        assert status(port, "/readyz") == 200
    finally:
        code = proc.stop()
    assert code == 0, proc.tail()

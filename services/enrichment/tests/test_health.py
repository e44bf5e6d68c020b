"""The worker's probe endpoints, over real HTTP."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

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

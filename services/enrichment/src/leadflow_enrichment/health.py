"""A worker's health over HTTP, for Kubernetes probes: Dramatiq workers serve no port otherwise.

    GET /healthz   200 while every consumer and worker thread is alive (else 503: restart me)
    GET /readyz    200 while Redis answers a PING (else 503: take no traffic, don't restart)

Off unless LEADFLOW_WORKER_HEALTH_ADDR is set (the chart sets 0.0.0.0:8081).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Check = Callable[[], bool]


def _safe(check: Check) -> bool:
    try:
        return check()
    except Exception:
        return False


class HealthServer:
    def __init__(self, addr: str, alive: Check, ready: Check) -> None:
        host, _, port = addr.rpartition(":")
        checks = {"/healthz": alive, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                check = checks.get(self.path.split("?", 1)[0])
                if check is None:
                    self.send_error(404)
                    return
                ok = _safe(check)
                body = b"ok\n" if ok else b"unhealthy\n"
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds would flood the logs

        self._server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def workers_alive(workers: list[Any]) -> bool:
    """Every consumer and worker thread of these dramatiq.Workers is running."""
    for worker in workers:
        threads = [*worker.consumers.values(), *worker.workers]
        if not threads or not all(t.is_alive() for t in threads):
            return False
    return True

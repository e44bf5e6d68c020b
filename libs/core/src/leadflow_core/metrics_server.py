"""The metrics and health port every component serves, apart from any public port:

- `/metrics`  Prometheus text format (the process's default registry);
- `/healthz`  liveness: 200 while the process can answer (a wedged process stops answering);
- `/readyz`   readiness: 200 when `ready()` says so, else 503 with what is missing.

Names follow one scheme: `leadflow_<component>_<thing>_<unit>` with Prometheus' `_total` for
counters; tenant is a label only where the number of tenants bounds it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

# Returns (ready, what is missing).
ReadyCheck = Callable[[], tuple[bool, str]]


def _always_ready() -> tuple[bool, str]:
    return True, ""


def start_metrics_server(addr: str, ready: ReadyCheck = _always_ready) -> ThreadingHTTPServer:
    """Serve on `addr` ("host:port"; port 0 picks one) from a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b'{"status":"ok"}', "application/json")
            elif path == "/readyz":
                try:
                    ok, missing = ready()
                except Exception as err:  # a failing check means "not ready", said plainly
                    ok, missing = False, f"{type(err).__name__}: {err}"
                body = json.dumps({"ready": ok, "missing": missing}).encode()
                self._send(200 if ok else 503, body, "application/json")
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # probes every few seconds would drown the logs

    host, _, port = addr.rpartition(":")
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def bound_port(server: ThreadingHTTPServer) -> int:
    return int(server.server_address[1])

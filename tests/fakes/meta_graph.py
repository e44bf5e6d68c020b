"""A fake of Meta's Graph API on loopback: `GET /v<version>/{leadgen_id}?access_token=…` answers
the lead's `field_data` as Graph does, with Graph's error shapes for bad tokens and unknown ids."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_PATH = re.compile(r"^/(?:v\d+\.\d+/)?(\d+)/?$")


@dataclass
class GraphState:
    """What the fake serves; tests add leads and may make the next requests fail."""

    access_token: str
    leads: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_next: int = 0
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_lead(self, leadgen_id: str, field_data: dict[str, list[str]], created_time: str) -> None:
        self.leads[leadgen_id] = {
            "id": leadgen_id,
            "created_time": created_time,
            "field_data": [{"name": k, "values": v} for k, v in field_data.items()],
        }


def _error(message: str, kind: str, code: int, subcode: int | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"message": message, "type": kind, "code": code, "fbtrace_id": "AbCdEfGhIjK"}
    if subcode is not None:
        err["error_subcode"] = subcode
    return {"error": err}


def _handler(state: GraphState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, doc: dict[str, Any]) -> None:
            payload = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            with state.lock:
                state.requests.append(parts.path)
                if state.fail_next > 0:
                    state.fail_next -= 1
                    self._send(500, _error("An unexpected error has occurred.", "OAuthException", 2))
                    return
            m = _PATH.match(parts.path)
            if query.get("access_token", [""])[0] != state.access_token:
                self._send(
                    400,
                    _error("Invalid OAuth access token - Cannot parse access token", "OAuthException", 190),
                )
                return
            if m is None or m.group(1) not in state.leads:
                self._send(
                    400,
                    _error(
                        "Unsupported get request. Object with ID does not exist, cannot be loaded due to "
                        "missing permissions, or does not support this operation.",
                        "GraphMethodException",
                        100,
                        33,
                    ),
                )
                return
            self._send(200, state.leads[m.group(1)])

    return Handler


@contextmanager
def serve_graph(access_token: str) -> Iterator[tuple[str, GraphState]]:
    """Start the fake on 127.0.0.1:0; yields (base URL with version, state)."""
    state = GraphState(access_token=access_token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, name="fake-meta-graph", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v21.0", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

"""A threaded local HTTP server on 127.0.0.1:0 that vendor fakes build on.

It records every request and can be told to misbehave for the next N requests (an error answer
with headers such as Retry-After, or a delay longer than the client's timeout). Use it as a
context manager:

    with HubSpotFake(token="t") as hubspot:
        hubspot.fail(times=2, status=429, headers={"Retry-After": "1"})
        ...  # point the client at hubspot.url
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)


@dataclass
class Reply:
    status: int
    body: Any = b""  # bytes as-is; anything else is sent as JSON
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            return self.body, headers
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body).encode(), headers


@dataclass
class Fault:
    """Answer `reply` (or the normal answer, late) instead of the normal answer."""

    reply: Reply | None
    delay_seconds: float = 0.0
    path_contains: str = ""
    # The vendor does the work first, then the answer is lost (an error or a stall instead of
    # the real answer): what a client sees when a write succeeds and its response never comes.
    after_effect: bool = False


class FakeHttpServer:
    """Subclasses implement `route`; tests use `fail`, `stall`, `requests` and `url`."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- what subclasses implement -------------------------------------------------------------

    def route(self, request: RecordedRequest) -> Reply:
        return Reply(404, {"error": "not found"})

    def error_reply(self, status: int) -> Reply:
        """The vendor's usual body for an injected error status."""
        return Reply(status, {"error": f"injected {status}"})

    # --- programming failures ------------------------------------------------------------------

    def fail(
        self,
        times: int = 1,
        status: int = 500,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        path_contains: str = "",
        after_effect: bool = False,
    ) -> None:
        """The next `times` matching requests get `status` (with the vendor's error body by default);
        with `after_effect` the vendor first does what the request asked (a write happens)."""
        reply = self.error_reply(status) if body is None else Reply(status, body)
        reply.headers.update(headers or {})
        with self._lock:
            self._faults.extend(Fault(reply, 0.0, path_contains, after_effect) for _ in range(times))

    def stall(
        self, times: int = 1, seconds: float = 5.0, *, path_contains: str = "", after_effect: bool = False
    ) -> None:
        """The next `times` matching requests are answered normally, but only after `seconds`;
        with `after_effect` the work is done at once and only the answer is late."""
        with self._lock:
            self._faults.extend(Fault(None, seconds, path_contains, after_effect) for _ in range(times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def requests_to(self, path_contains: str, method: str = "") -> list[RecordedRequest]:
        with self._lock:
            return [
                r for r in self.requests if path_contains in r.path and (not method or r.method == method)
            ]

    # --- life cycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        handler = _make_handler(self._handle)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        # A short poll interval keeps stop() quick (shutdown waits for the loop to notice).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases stalled requests
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- internals -----------------------------------------------------------------------------

    def _take_fault(self, request: RecordedRequest) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.path_contains in request.path:
                    return self._faults.pop(i)
        return None

    def _handle(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
        fault = self._take_fault(request)
        if fault is None:
            return self.route(request)
        done = self.route(request) if fault.after_effect else None
        if fault.delay_seconds:
            self._stopping.wait(fault.delay_seconds)
        if fault.reply is not None:
            return fault.reply
        return done if done is not None else self.route(request)


def _make_handler(handle: Callable[[RecordedRequest], Reply]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            try:
                reply = handle(request)
            except Exception as err:  # a bug in a fake must show up as a 500, not a hang
                reply = Reply(500, {"fake_error": repr(err)})
            payload, headers = reply.encoded()
            try:
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout), as clients do

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean (and free of any PII in paths)

    return Handler


class RecordingServer(FakeHttpServer):
    """Answers every request with `status` (204 by default): a stand-in receiver of callbacks."""

    def __init__(self, status: int = 204) -> None:
        super().__init__()
        self.status = status

    def route(self, request: RecordedRequest) -> Reply:
        return Reply(self.status)

"""Limits of the public HTTP edge, enforced in uvicorn's httptools protocol before the app runs.

uvicorn bounds none of these with httptools: a request head may grow without end (httptools keeps
a header value in memory until it is complete), headers may arrive one byte a minute, and a body
may be dribbled for as long as the client likes, each holding a connection and a task. So:

- request line (the URL) longer than `max_url_bytes` -> 414;
- the head (request line and headers) longer than `max_head_bytes`, or more than `max_headers`
  header fields -> 431;
- the head not complete `head_timeout` seconds after the connection was ready for a request ->
  408 (or closed without an answer when nothing of a request had arrived: an idle connection);
- the body not complete `body_timeout` seconds after the head -> 408 (or closed, when the app has
  already begun its answer);
- an idle keep-alive connection is closed after uvicorn's `timeout_keep_alive`.

Each refusal is answered as JSON like the app's own errors and closes the connection; nothing of
the request reaches the app (or, for a slow body, the app sees the client disconnect and stores
nothing)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from leadflow_core.logs import get_logger

log = get_logger("leadflow.gateway.edge")


@dataclass(frozen=True)
class EdgeLimits:
    max_url_bytes: int = 8 * 1024
    max_head_bytes: int = 32 * 1024
    max_headers: int = 100
    head_timeout: float = 10.0
    body_timeout: float = 30.0


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: EdgeLimits = EdgeLimits()

    # --- state per connection, reset per request ----------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._refused = False
        self._head_bytes = 0
        self._header_bytes = 0
        self._header_count = 0
        self._in_head = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._refused or not self._in_head:
            return
        # Everything fed while the head is incomplete is head: bounded before httptools buffers more.
        self._head_bytes += len(data)
        if len(self.url) > self.limits.max_url_bytes:
            self._refuse(414, "uri_too_long", f"request line exceeds {self.limits.max_url_bytes} bytes")
        elif self._head_bytes > self.limits.max_head_bytes:
            self._refuse(431, "headers_too_large", f"headers exceed {self.limits.max_head_bytes} bytes")

    def send_400_response(self, msg: str) -> None:
        # Our refusals abort the parser from a callback, which uvicorn reports as a malformed
        # request: the answer has been given already.
        if not self._refused:
            super().send_400_response(msg)

    # --- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._header_bytes = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            self._refuse(414, "uri_too_long", f"request line exceeds {self.limits.max_url_bytes} bytes")
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        # A head that arrived in one read was never counted by data_received: count it here.
        self._header_bytes += len(name) + len(value) + 4
        if self._header_count > self.limits.max_headers:
            self._refuse(431, "headers_too_large", f"more than {self.limits.max_headers} header fields")
            raise _Refused
        if len(self.url) + self._header_bytes > self.limits.max_head_bytes:
            self._refuse(431, "headers_too_large", f"headers exceed {self.limits.max_head_bytes} bytes")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    # --- timers and refusals ------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._in_head:
            self.transport.close()  # idle: nothing of a request arrived
            return
        self._refuse(
            408, "request_timeout", f"request headers not received within {self.limits.head_timeout}s"
        )

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self._refused = True
            self.transport.close()
            return
        self._refuse(408, "request_timeout", f"body not received within {self.limits.body_timeout}s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        if self._refused:
            return
        self._refused = True
        self._cancel_timers()
        log.info("http_refused_at_edge", status=status, code=code)
        body = orjson.dumps({"error": {"code": code, "message": message}})
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(head))
        self.transport.close()


class _Refused(Exception):
    """Stops httptools from parsing a request the edge has already refused."""


def guarded_protocol(limits: EdgeLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, carrying these limits."""
    return type("GuardedHttp", (GuardedHttpToolsProtocol,), {"limits": limits})

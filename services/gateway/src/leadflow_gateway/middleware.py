"""ASGI middleware: bind the request id (accepted from `X-Request-Id` or new), echo it, count and time."""

from __future__ import annotations

import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadflow_core.logs import get_logger
from leadflow_core.request_context import bound
from leadflow_gateway.metrics import LATENCY, REQUESTS, source_label

log = get_logger("leadflow.gateway.http")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        start = time.perf_counter()
        status = 500
        path: str = scope.get("path", "")
        with bound(given if _VALID_ID.match(given) else None) as rid:

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                await send(message)

            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - start
                source = source_label(path)
                REQUESTS.labels(source=source, status=str(status)).inc()
                LATENCY.labels(source=source).observe(elapsed)
                if source != "probe":
                    log.info(
                        "http_request",
                        method=scope.get("method", ""),
                        source=source,
                        status=status,
                        ms=round(elapsed * 1000, 2),
                    )

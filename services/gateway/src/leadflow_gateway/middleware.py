"""ASGI middleware: bind the request id (accepted from `X-Request-Id` or new), echo it, count and
time; and hand each lead-intake request to the inbound request log once it is answered."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadflow_core.logs import get_logger
from leadflow_core.request_context import bound
from leadflow_gateway import request_log
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
        method: str = scope.get("method", "")
        logged = request_log.is_logged(method, path)
        received_at = datetime.now(UTC)
        body = bytearray()
        answer = bytearray()
        with bound(given if _VALID_ID.match(given) else None) as rid:
            note = request_log.begin() if logged else None

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                elif logged and message["type"] == "http.response.body" and len(answer) < 4096:
                    answer.extend(message.get("body", b"")[:4096])
                await send(message)

            async def receive_kept() -> Message:
                message = await receive()
                if message["type"] == "http.request" and len(body) < request_log.MAX_KEPT_BODY:
                    body.extend(message.get("body", b""))
                return message

            try:
                await self.app(scope, receive_kept if logged else receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - start
                source = source_label(path)
                REQUESTS.labels(source=source, status=str(status)).inc()
                LATENCY.labels(source=source).observe(elapsed)
                if source != "probe":
                    log.info(
                        "http_request",
                        method=method,
                        source=source,
                        status=status,
                        ms=round(elapsed * 1000, 2),
                    )
                if note is not None and note.tenant:
                    _keep(scope, note, bytes(body), status, bytes(answer), rid, received_at)


def _error_code(status: int, answer: bytes) -> str:
    if status < 400:
        return ""
    try:
        doc = json.loads(answer)
    except ValueError:
        return ""
    error = doc.get("error") if isinstance(doc, dict) else None
    return str(error.get("code", "")) if isinstance(error, dict) else ""


def _keep(
    scope: Scope,
    note: request_log.RequestNote,
    body: bytes,
    status: int,
    answer: bytes,
    rid: str,
    received_at: datetime,
) -> None:
    replay = request_log.replaying()
    if replay is not None:
        replay.lead_ids[:] = note.lead_ids
    app = scope.get("app")
    recorder = getattr(getattr(getattr(app, "state", None), "gateway", None), "recorder", None)
    if recorder is None:
        return
    recorder.record(
        request_log.record_of(
            note,
            scope.get("method", ""),
            scope.get("path", ""),
            scope.get("query_string", b"").decode("latin-1"),
            scope.get("headers", []),
            body,
            status,
            _error_code(status, answer),
            rid,
            received_at,
            replay,
        )
    )

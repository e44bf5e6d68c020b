"""`POST /v1/replays`: run a logged request again through its normal route, for an operator.

The dispatcher (AdminService.ReplayRequests, called with the operator's certificate and audited)
sends a single-use grant in `X-Leadflow-Replay-Grant`; the gateway redeems it over mutual TLS
(`DispatcherService.ClaimReplay`), gets the stored request back and hands it to its own route as
if it had just arrived — without the sender check, which the request passed at intake (see
`request_log.check_sender`). The route's idempotency is untouched: a request whose lead is
stored answers with that lead. The replay is logged as a request of its own (`replay_of`).
The answer is a JSON summary: the route's status, the leads, and its body.
"""

from __future__ import annotations

from fastapi.responses import ORJSONResponse
from starlette.requests import Request
from starlette.types import Message

from leadflow_core.request_context import current_request_id
from leadflow_gateway import request_log
from leadflow_gateway.errors import unauthenticated
from leadflow_gateway.ingest import Gateway

GRANT_HEADER = "x-leadflow-replay-grant"


async def replay_logged_request(gw: Gateway, request: Request) -> ORJSONResponse:
    grant = request.headers.get(GRANT_HEADER, "")
    if not grant or len(grant) > 200:
        raise unauthenticated(f"missing {GRANT_HEADER}")
    logged = await gw.backends.claim_replay(grant)
    if logged is None:
        raise unauthenticated("unknown, spent or lapsed replay grant")
    replay = request_log.Replay(
        request_log_id=logged.request_log_id,
        tenant=logged.tenant,
        original_id=logged.replay_of or logged.request_log_id,
    )
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in logged.headers.items()]
    # The replay's own request id, so its logs and timeline entries follow it.
    headers = [h for h in headers if h[0] != b"x-request-id"] + [
        (b"x-request-id", current_request_id().encode())
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": logged.method,
        "scheme": "http",
        "path": logged.path,
        "raw_path": logged.path.encode(),
        "root_path": "",
        "query_string": logged.query.encode("latin-1"),
        "headers": headers,
        "client": ("replay", 0),
        "server": request.scope.get("server"),
    }
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if body_sent:
            return {"type": "http.disconnect"}
        body_sent = True
        return {"type": "http.request", "body": logged.body, "more_body": False}

    status = 0
    answer = bytearray()

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            answer.extend(message.get("body", b""))

    # The replay marker is set here, so the route and the log middleware of the nested call see it.
    request_log.begin_replay(replay)
    await request.app(scope, receive, send)
    return ORJSONResponse(
        {
            "request_log_id": logged.request_log_id,
            "status": status,
            "lead_ids": replay.lead_ids,
            "answer": answer.decode("utf-8", "replace")[:4000],
        }
    )

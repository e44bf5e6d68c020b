"""The inbound request log: every lead-intake request (webhooks and `POST /v1/leads`) is kept by
the dispatcher — headers without secrets, body without secret fields, the answer's status, the
leads it stored — so operators can list and replay it.

Recording never costs a commit per request: finished requests are sent in batches
(`DispatcherService.RecordRequests`, one transaction each, at most two a second per gateway
process) off the request path, after the answer went out. A request is logged only once its
tenant and source are known (an unknown tenant or a bad API key names nobody to keep it for).

Handlers tell the log what they learnt through `current()`: the tenant, that the sender passed
its check (`verified`), the leads stored. A replay (`replaying()`) is a stored request run again
on an operator's authenticated request: handlers skip the sender check — it was verified at
intake — and the replay is logged with `replay_of`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import grpc.aio

from leadflow.v1 import dispatcher_pb2, dispatcher_pb2_grpc, inbound_pb2
from leadflow_core.grpc_clients import request_metadata
from leadflow_core.logs import get_logger
from leadflow_core.timestamps import to_proto

log = get_logger("leadflow.gateway.request_log")

REDACTED = "[redacted]"
# Never kept, whatever the source: credentials, signatures, shared secrets, cookies.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-hub-signature",
        "x-hub-signature-256",
        "x-hubspot-signature",
        "x-hubspot-signature-v3",
        "x-twilio-signature",
        "webhook-signature",
        "x-leadflow-secret",
        "x-form-key",
        "x-leadflow-replay-grant",
    }
)
# Header or parameter names that look like a credential are dropped too.
_SECRET_NAME = re.compile(r"secret|signature|token|password|api[-_]?key|auth|cookie|form[-_]key", re.I)
# Body fields that carry a credential (Google's lead form key, our web form's key).
SECRET_FIELDS = frozenset({"google_key", "form_key"})
MAX_KEPT_BODY = 1024 * 1024
# Salesforce's path may end in the source's path token: logged, but never with the token.
_LOGGED_PATH = re.compile(r"^/v1/(?:webhooks/[^/]+/[^/]+|webhooks/[^/]+/salesforce/[^/]+|leads)$")
_PATH_TOKEN = re.compile(r"^(/v1/webhooks/[^/]+/salesforce)/[^/]+$")


@dataclass
class RequestNote:
    """What the handler learnt about the request, for its log record."""

    # Named here, not by the dispatcher: a single-lead request's lead carries it (see
    # `implicit_idempotency_key`), so a replay finds that lead again.
    request_log_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    tenant: str = ""
    source: str = ""
    verified: bool = False
    lead_ids: list[str] = field(default_factory=list)
    # A source's own secret header (Zapier's `secret_header` option).
    secret_headers: set[str] = field(default_factory=set)


@dataclass
class Replay:
    """A logged request being run again: who it was for, and what the replay stored."""

    request_log_id: str
    tenant: str
    # The request first received (a replay of a replay still names it).
    original_id: str = ""
    lead_ids: list[str] = field(default_factory=list)


_note: ContextVar[RequestNote | None] = ContextVar("leadflow_request_note", default=None)
_replay: ContextVar[Replay | None] = ContextVar("leadflow_replay", default=None)


def current() -> RequestNote:
    """The note of the request being handled (a throwaway one outside the logged routes)."""
    note = _note.get()
    return note if note is not None else RequestNote()


def replaying() -> Replay | None:
    return _replay.get()


def identified(tenant: str, source: str) -> None:
    note = _note.get()
    if note is not None:
        note.tenant, note.source = tenant, source


def verified() -> None:
    """The sender passed its check (or this is a replay of one that did at intake)."""
    note = _note.get()
    if note is not None:
        note.verified = True


def stored(lead_id: str) -> None:
    note = _note.get()
    if note is not None and lead_id and lead_id not in note.lead_ids:
        note.lead_ids.append(lead_id)


def implicit_idempotency_key() -> str:
    """The idempotency key of a single-lead request that brought none (no Idempotency-Key, no
    sender id): its log id, so replaying it finds the lead it stored instead of storing another.
    A fresh request has a fresh id, so this changes nothing for new deliveries."""
    replay = _replay.get()
    if replay is not None:
        return "req:" + (replay.original_id or replay.request_log_id)
    note = _note.get()
    return "req:" + note.request_log_id if note is not None else ""


def logged_path(path: str) -> str:
    """The path as kept: without a path token (a replay skips that check, as any sender check)."""
    return _PATH_TOKEN.sub(r"\1", path)


def is_logged(method: str, path: str) -> bool:
    return method == "POST" and _LOGGED_PATH.match(path) is not None


def kept_headers(raw: Sequence[tuple[bytes, bytes]], extra_secrets: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    secrets = SECRET_HEADERS | {h.lower() for h in extra_secrets}
    for name_b, value_b in raw:
        name = name_b.decode("latin-1").lower()
        if name in secrets or _SECRET_NAME.search(name):
            continue
        value = value_b.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def kept_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if _SECRET_NAME.search(k) else v) for k, v in pairs])


def kept_body(content_type: str, body: bytes) -> bytes:
    """The body with secret fields' values replaced (JSON objects and form posts)."""
    media = content_type.split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return body
        if not any(k in SECRET_FIELDS for k, _ in pairs):
            return body
        return urlencode([(k, REDACTED if k in SECRET_FIELDS else v) for k, v in pairs]).encode()
    if media.endswith("json"):
        try:
            doc = json.loads(body)
        except ValueError:
            return body
        if isinstance(doc, dict) and SECRET_FIELDS & doc.keys():
            return json.dumps({k: REDACTED if k in SECRET_FIELDS else v for k, v in doc.items()}).encode()
    return body


class RequestRecorder:
    """Finished requests wait here and leave together, at most every `max_delay_seconds` (or
    sooner when `max_bytes` are waiting): one RecordRequests call — one commit — per flush, so
    the log's commits are bounded by time, not by the request rate. Byte-bounded chunks stay
    well under the dispatcher's 16 MiB message limit."""

    def __init__(
        self,
        dispatcher: dispatcher_pb2_grpc.DispatcherServiceAsyncStub,
        timeout: float,
        max_delay_seconds: float = 0.5,
        max_bytes: int = 4 * 1024 * 1024,
        max_count: int = 1000,
    ) -> None:
        self._dispatcher = dispatcher
        self._timeout = timeout
        self._max_delay = max_delay_seconds
        self._max_bytes = max_bytes
        self._max_count = max_count
        self._pending: list[inbound_pb2.InboundRequest] = []
        self._bytes = 0
        self._kick: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def record(self, request: inbound_pb2.InboundRequest) -> None:
        """Never waits: the answer has gone out already."""
        if self._closing:
            return
        self._pending.append(request)
        self._bytes += request.ByteSize()
        if self._task is None:
            self._kick = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        full = self._bytes >= self._max_bytes or len(self._pending) >= self._max_count
        if full and self._kick is not None:
            self._kick.set()

    async def _run(self) -> None:
        assert self._kick is not None
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self._max_delay)
            self._kick.clear()
            await self._flush()

    def _chunks(self) -> list[list[inbound_pb2.InboundRequest]]:
        """What waits now, in byte- and count-bounded chunks; later records wait for the next
        flush, so a steady load still means one flush per interval."""
        pending, self._pending, self._bytes = self._pending, [], 0
        chunks: list[list[inbound_pb2.InboundRequest]] = [[]]
        size = 0
        for r in pending:
            over = size + r.ByteSize() > self._max_bytes or len(chunks[-1]) >= self._max_count
            if chunks[-1] and over:
                chunks.append([])
                size = 0
            chunks[-1].append(r)
            size += r.ByteSize()
        return [c for c in chunks if c]

    async def _flush(self) -> None:
        for batch in self._chunks():
            try:
                await self._dispatcher.RecordRequests(
                    dispatcher_pb2.RecordRequestsRequest(requests=batch),
                    timeout=self._timeout,
                    metadata=request_metadata(),
                )
            except grpc.aio.AioRpcError as err:
                # A lost log record must never fail intake; the leads themselves are stored.
                log.warning("request_log_dropped", count=len(batch), code=str(err.code()))

    async def close(self) -> None:
        self._closing = True
        if self._task is not None and self._kick is not None:
            self._kick.set()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._flush()


def record_of(
    note: RequestNote,
    method: str,
    path: str,
    query: str,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    status: int,
    error_code: str,
    request_id: str,
    received_at: datetime,
    replay: Replay | None,
) -> inbound_pb2.InboundRequest:
    content_type = next((v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), "")
    return inbound_pb2.InboundRequest(
        request_log_id=note.request_log_id,
        tenant=note.tenant,
        source=note.source,
        method=method,
        path=logged_path(path),
        query=kept_query(query),
        headers=kept_headers(headers, note.secret_headers),
        body=kept_body(content_type, body[:MAX_KEPT_BODY]),
        status=status,
        lead_ids=note.lead_ids,
        received_at=to_proto(received_at.astimezone(UTC)),
        verified=note.verified or replay is not None,
        replay_of=replay.request_log_id if replay else "",
        request_id=request_id,
        error_code=error_code[:64],
    )


def begin() -> RequestNote:
    note = RequestNote()
    _note.set(note)
    return note


def begin_replay(replay: Replay) -> None:
    _replay.set(replay)


def check_sender(check: Callable[[], object]) -> None:
    """Run the source's sender check (signature, shared secret, allow-list) and note that it
    passed; a replay skips it: the stored request passed it at intake, and a secret rotated since
    could not verify it again."""
    if _replay.get() is None:
        check()
    verified()

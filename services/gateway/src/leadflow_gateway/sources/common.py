"""Pieces every source handler shares: envelopes from the request, flat bodies, the 202/200 answer."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from leadflow.v1 import lead_pb2
from leadflow_gateway.ascii_text import check_id
from leadflow_gateway.body import FORM, JSON, media_type, parse_form, parse_json
from leadflow_gateway.errors import bad_request
from leadflow_gateway.fields import flatten
from leadflow_gateway.ingest import Stored
from leadflow_gateway.normalise import Envelope
from leadflow_gateway.settings import GatewaySettings

MAX_IDEMPOTENCY_KEY = 200


def envelope(request: Request, tenant: str, source: lead_pb2.Source.ValueType) -> Envelope:
    key = check_id("Idempotency-Key", request.headers.get("idempotency-key", "")).strip()
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise bad_request("Idempotency-Key", f"at most {MAX_IDEMPOTENCY_KEY} characters")
    return Envelope(
        tenant=tenant,
        source=source,
        received_at=datetime.now(UTC),
        idempotency_key=key,
        client_ip=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", "")[:1000],
        page_url=request.headers.get("referer", "")[:2000],
    )


def flat_items(request: Request, body: bytes) -> list[tuple[str, str]]:
    """A JSON object (nested keys dotted) or a form-urlencoded body as (name, value) pairs."""
    if media_type(request) == FORM:
        return parse_form(body)
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise bad_request("body", "body must be a JSON object")
    return flatten(doc)


def stored_answer(stored: Stored, extra: dict[str, object] | None = None) -> JSONResponse:
    """202 once stored; 200 for a duplicate of a stored lead."""
    body: dict[str, object] = dict(stored.answer())
    body.update(extra or {})
    return JSONResponse(body, status_code=200 if stored.duplicate else 202)


def empty_ok() -> Response:
    """A `200` with an empty body: Google's documented answer to a delivered lead."""
    return Response(status_code=200)


def public_url(request: Request, settings: GatewaySettings) -> str:
    """The full URL the sender signed: the configured public base, else the URL as received."""
    path_qs = request.url.path + (("?" + request.url.query) if request.url.query else "")
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/") + path_qs
    return str(request.url.replace(path="", query="", fragment="")).rstrip("/") + path_qs


ACCEPTED_BODIES = (JSON, FORM)

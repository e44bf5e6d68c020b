"""`POST /v1/calls/{tenant}/status`: Twilio status callbacks (form-encoded), verified by
`X-Twilio-Signature` with the auth token of the tenant's `calls` source, handed to the dispatcher.
A `Disposition` parameter (agent or IVR "do not call") revokes consent first (replies/dispositions.py);
a disposition-only post (no `CallStatus`) does only that."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.requests import Request

from leadflow.v1 import dispatcher_pb2
from leadflow_core.pii import scrub
from leadflow_gateway import signatures
from leadflow_gateway.ascii_text import check_header_token, check_id, is_alnum, is_digits
from leadflow_gateway.body import FORM, parse_form, read_body, require_media
from leadflow_gateway.errors import GatewayError, bad_request, unauthenticated
from leadflow_gateway.ingest import Gateway
from leadflow_gateway.replies import dispositions
from leadflow_gateway.replies.revoke import token as ascii_token
from leadflow_gateway.sources.common import public_url

STATUSES = frozenset(
    {"queued", "initiated", "ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled"}
)


def to_request(
    tenant: str, params: list[tuple[str, str]], attempt_id: str = ""
) -> dispatcher_pb2.RecordCallStatusRequest:
    """`attempt_id` is our marker from the callback URL (signed with it by the dialer)."""
    values = dict(params)
    if attempt_id and (not is_alnum(attempt_id) or len(attempt_id) > 64):
        raise bad_request("attempt_id", "malformed")
    call_sid = check_id("CallSid", values.get("CallSid", "").strip())
    if not is_alnum(call_sid) or len(call_sid) > 64:
        raise bad_request("CallSid", "missing or malformed")
    status = values.get("CallStatus", "").strip().lower()
    if status not in STATUSES:
        raise bad_request("CallStatus", f"must be one of {sorted(STATUSES)}")
    duration = values.get("CallDuration", "") or values.get("Duration", "")
    if duration and (not is_digits(duration) or len(duration) > 9):
        raise bad_request("CallDuration", "must be whole seconds in ASCII digits")
    price = values.get("Price", "").strip().lstrip("-")
    if values.get("PriceUnit", "USD").strip().upper() != "USD":
        # Budgets are in dollars: a price in another currency is not settled as if it were one
        # (the reservation's estimate stands).
        price = ""
    return dispatcher_pb2.RecordCallStatusRequest(
        tenant=tenant,
        provider_call_id=call_sid,
        status=status,
        duration_seconds=int(duration) if duration else 0,
        price_usd=price[:32],
        # Numbers are masked here already: the dispatcher keeps these for audit only.
        params={k[:100]: scrub(v)[:500] for k, v in list(values.items())[:100]},
        attempt_id=attempt_id,
    )


async def handle(gw: Gateway, request: Request, tenant: str) -> JSONResponse:
    params = await _verified(gw, request, tenant)
    has_status = any(k == "CallStatus" for k, _ in params)
    marker = request.query_params.get("attempt_id", "")
    if not dispositions.has_disposition(params):
        resp = await gw.backends.record_call_status(to_request(tenant, params, marker))
        return JSONResponse({"applied": resp.applied, "lead_id": resp.lead_id}, status_code=200)
    # Checked whole before anything changes: a malformed status must not leave a revocation behind.
    status = to_request(tenant, params, marker) if has_status else None
    campaign = ascii_token(request.query_params.get("campaign", ""), "campaign")
    revocation = await dispositions.apply(gw, tenant, params, campaign)
    if status is None:
        return JSONResponse({"applied": False, "lead_id": "", "revocation": revocation}, status_code=200)
    resp = await gw.backends.record_call_status(status)
    answer = {"applied": resp.applied, "lead_id": resp.lead_id, "revocation": revocation}
    return JSONResponse(answer, status_code=200)


async def _verified(gw: Gateway, request: Request, tenant: str) -> list[tuple[str, str]]:
    """The callback's parameters once its signature holds.

    A signed callback is never rate limited: Twilio does not retry one it was refused, so a 429
    would lose the call's outcome (its slot and reservation wait for a status lookup), and its
    volume is bounded by the calls we placed, which the tenant's call limits already bound.
    A refused request counts against its IP's abuse limit, as any webhook's does."""
    try:
        ctx = await gw.source_context(tenant, "calls", request)
        body = await read_body(request, gw.body_limit(ctx))
        require_media(request, FORM)
        params = parse_form(body)
        check_header_token("X-Twilio-Signature", request.headers.get("x-twilio-signature"))
        token = ctx.secret("auth_token")
        url = public_url(request, gw.settings)
        if not signatures.verify_twilio(token, url, params, request.headers.get("x-twilio-signature")):
            raise unauthenticated("missing or invalid X-Twilio-Signature")
    except GatewayError as refused:
        if refused.status < 500:
            await gw.limit_ip(request)
        raise
    return params

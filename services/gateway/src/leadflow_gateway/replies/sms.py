"""`POST /v1/replies/{tenant}/sms`: Twilio Messaging webhooks (an incoming text), form-encoded and
signed with `X-Twilio-Signature` by the auth token of the tenant's `sms` source, verified exactly
like call status callbacks. A STOP-like reply revokes consent for the sender's number at once.

The answer is TwiML. When the reply revoked consent, the one confirmation text the FCC allows
(47 CFR 64.1200(a)(12): within 5 minutes, no marketing) is sent as a TwiML `<Message>` — only after
compliance grants the claim, so a redelivered webhook never sends a second one. The text is the
source option `confirmation_text`; `send_confirmation: "false"` turns it off (e.g. when Twilio's
own opt-out handling already confirms).

The campaign the number belongs to may be named in the webhook URL (`?campaign=...`); the URL is
part of what Twilio signs.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from fastapi.responses import Response
from starlette.requests import Request

from leadflow.v1 import compliance_pb2
from leadflow_core import timestamps
from leadflow_gateway import signatures
from leadflow_gateway.ascii_text import check_header_token
from leadflow_gateway.body import FORM, parse_form, read_body, require_media
from leadflow_gateway.errors import bad_request, unauthenticated
from leadflow_gateway.ingest import Gateway
from leadflow_gateway.replies.revoke import signal, token
from leadflow_gateway.sources.common import public_url

DEFAULT_CONFIRMATION = (
    "You are unsubscribed and will not be contacted again. No further messages will be sent."
)
MAX_BODY_CHARS = 1600  # Twilio's longest message
TWIML = "application/xml"


def twiml(message: str = "") -> Response:
    inner = f"<Message>{escape(message)}</Message>" if message else ""
    return Response(f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>', media_type=TWIML)


def to_request(
    tenant: str, params: list[tuple[str, str]], campaign: str
) -> compliance_pb2.RevocationSignalRequest:
    values = dict(params)
    sid = token(values.get("MessageSid", "") or values.get("SmsSid", ""), "MessageSid", required=True)
    sender = values.get("From", "").strip()
    if not sender:
        raise bad_request("From", "required")
    text = values.get("Body", "")
    if len(text) > MAX_BODY_CHARS:
        raise bad_request("Body", f"at most {MAX_BODY_CHARS} characters")
    request = compliance_pb2.RevocationSignalRequest(
        tenant=tenant,
        phone_e164=sender,
        channel="sms",
        message_id=sid,
        text=text,
        campaign=campaign,
        actor="gateway:sms",
    )
    request.received_at.CopyFrom(timestamps.to_proto(timestamps.utcnow()))
    return request


async def handle(gw: Gateway, request: Request, tenant: str) -> Response:
    await gw.limit_ip(request)
    ctx = await gw.admit(tenant, "sms", request)
    body = await read_body(request, gw.body_limit(ctx))
    require_media(request, FORM)
    params = parse_form(body)
    check_header_token("X-Twilio-Signature", request.headers.get("x-twilio-signature"))
    url = public_url(request, gw.settings)
    if not signatures.verify_twilio(
        ctx.secret("auth_token"), url, params, request.headers.get("x-twilio-signature")
    ):
        raise unauthenticated("missing or invalid X-Twilio-Signature")
    campaign = token(request.query_params.get("campaign", ""), "campaign")
    outcome = await signal(gw, to_request(tenant, params, campaign))
    revocation_id = str(outcome["revocation_id"] or "")
    if not outcome["revoked"] or outcome["duplicate"] or ctx.option("send_confirmation") == "false":
        return twiml()
    claim = await gw.backends.claim_confirmation(tenant, revocation_id, "gateway:sms")
    if not claim.allowed:
        return twiml()
    return twiml(ctx.option("confirmation_text") or DEFAULT_CONFIRMATION)

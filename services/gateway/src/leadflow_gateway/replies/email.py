"""`POST /v1/replies/{tenant}/email`: email replies, from any mail provider's inbound hook or relay,
as JSON signed with Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`:
`v1,<base64 HMAC-SHA256>` with the `email` source's `webhook_secret*`, 5-minute tolerance).

An "unsubscribe" (or any opt-out, see compliance's opt_out.py) in the person's own words or in the
subject revokes consent for the sender's email address and, when the relay knows it, the lead's
phone number. Quoted history is cut off first (email_text.py).
"""

from __future__ import annotations

import time
from email.utils import parseaddr

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from leadflow.v1 import compliance_pb2
from leadflow_core import timestamps
from leadflow_gateway import signatures
from leadflow_gateway.ascii_text import check_header_token, check_id, is_digits
from leadflow_gateway.body import JSON, parse_json_object, read_body, require_media
from leadflow_gateway.errors import bad_request, unauthenticated
from leadflow_gateway.ingest import Gateway
from leadflow_gateway.replies.email_text import own_words
from leadflow_gateway.replies.revoke import signal, token

WEBHOOK_SECRET_PREFIX = "webhook_secret"  # noqa: S105 - a name, not a secret
MAX_TEXT = 10_000


class EmailReply(BaseModel):
    """An inbound email reply, as the relay forwards it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    sender: str = Field(alias="from", min_length=3, max_length=320, description="`addr` or `Name <addr>`")
    subject: str = Field("", max_length=2000)
    text: str = Field("", max_length=200_000, description="Plain-text body, quoted history included")
    stripped_text: str = Field(
        "", max_length=200_000, description="The reply without quoted history, when the provider has it"
    )
    message_id: str = Field("", max_length=200, description="Message-ID; default: the webhook-id")
    phone: str = Field("", max_length=64, description="The lead's phone, when the relay knows it")
    campaign: str = Field("", max_length=200)


def parse(body: bytes) -> EmailReply:
    doc = parse_json_object(body)
    try:
        return EmailReply.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise bad_request(field, str(first["msg"])) from err


def sender_address(sender: str) -> str:
    _, address = parseaddr(check_id("from", sender))
    local, at, domain = address.partition("@")
    if not (local and at and "." in domain) or not address.isascii() or any(c.isspace() for c in address):
        raise bad_request("from", "not an email address")
    return address.lower()


async def handle(gw: Gateway, request: Request, tenant: str) -> JSONResponse:
    await gw.limit_ip(request)
    ctx = await gw.admit(tenant, "email", request)
    body = await read_body(request, gw.body_limit(ctx))
    require_media(request, JSON)
    headers = {
        k: request.headers.get(k, "") for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }
    # Same header rules as the direct API: only ASCII is well-formed (a 400 naming the header).
    check_id("webhook-id", headers["webhook-id"])
    check_header_token("webhook-signature", headers["webhook-signature"])
    if headers["webhook-timestamp"] and not is_digits(headers["webhook-timestamp"].strip()):
        raise bad_request("webhook-timestamp", "must be Unix seconds in ASCII digits")
    secrets = ctx.secrets_with_prefix(WEBHOOK_SECRET_PREFIX)
    tolerance = gw.settings.signature_tolerance_seconds
    if not signatures.verify_standard_webhook(secrets, headers, body, int(time.time()), tolerance):
        raise unauthenticated("missing or invalid webhook-signature")
    reply = parse(body)
    words = reply.stripped_text.strip() or own_words(reply.text)
    req = compliance_pb2.RevocationSignalRequest(
        tenant=tenant,
        email=sender_address(reply.sender),
        phone_e164=reply.phone.strip(),
        channel="email",
        message_id=token(reply.message_id or headers["webhook-id"], "message_id", required=True),
        text=words[:MAX_TEXT],
        subject=reply.subject,
        campaign=token(reply.campaign, "campaign"),
        actor="gateway:email",
    )
    req.received_at.CopyFrom(timestamps.to_proto(timestamps.utcnow()))
    return JSONResponse(await signal(gw, req), status_code=200)

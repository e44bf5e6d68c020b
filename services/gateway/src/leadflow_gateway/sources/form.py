"""`POST /v1/webhooks/{tenant}/form`: website forms, JSON or form-urlencoded, per-tenant form key,
honeypot field, CORS for the tenant's allowed origins, consent checkbox with its disclosure text."""

from __future__ import annotations

import uuid

from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from leadflow.v1 import lead_pb2
from leadflow_gateway import request_log, signatures
from leadflow_gateway.ascii_text import check_header_token
from leadflow_gateway.backends import SourceContext
from leadflow_gateway.body import read_body, require_media
from leadflow_gateway.errors import GatewayError, bad_request, unauthenticated
from leadflow_gateway.fields import map_fields
from leadflow_gateway.ingest import Gateway
from leadflow_gateway.normalise import build_lead
from leadflow_gateway.sources.common import ACCEPTED_BODIES, envelope, flat_items, stored_answer

FORM_KEY_FIELD = "form_key"
FORM_KEY_HEADER = "x-form-key"
DEFAULT_HONEYPOT = "_honeypot"
ALLOWED_HEADERS = "Content-Type, Idempotency-Key, X-Form-Key, X-Request-Id"


def origin_allowed(ctx: SourceContext, origin: str) -> bool:
    allowed = ctx.option_list("allowed_origins")
    return "*" in allowed or origin.rstrip("/") in {a.rstrip("/") for a in allowed}


def cors_headers(ctx: SourceContext, origin: str) -> dict[str, str]:
    if not origin or not origin_allowed(ctx, origin):
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def check_origin(ctx: SourceContext, origin: str) -> None:
    """A browser names its page's origin; a form posted from a site the tenant did not list is refused."""
    if origin and ctx.option_list("allowed_origins") and not origin_allowed(ctx, origin):
        raise unauthenticated("origin not allowed for this form")


def honeypot_field(ctx: SourceContext) -> str:
    return ctx.option("honeypot_field", DEFAULT_HONEYPOT)


def check_form(ctx: SourceContext, items: list[tuple[str, str]], header_key: str) -> None:
    expected = ctx.secret("form_key")
    check_header_token("X-Form-Key", header_key)
    if expected:
        given = header_key or next((v for k, v in items if k == FORM_KEY_FIELD), "")
        if not signatures.shared_secret_matches(expected, given):
            raise unauthenticated("missing or wrong form key")
    trap = honeypot_field(ctx)
    if any(k == trap and v.strip() for k, v in items):
        raise bad_request(trap, "rejected as automated submission")


async def preflight(gw: Gateway, request: Request, tenant: str) -> Response:
    await gw.limit_ip(request)
    ctx = await gw.admit(tenant, "form", request)
    origin = request.headers.get("origin", "")
    headers = cors_headers(ctx, origin)
    if not headers:
        return Response(status_code=403)
    headers.update(
        {
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": "600",
        }
    )
    return Response(status_code=204, headers=headers)


async def handle(gw: Gateway, request: Request, tenant: str) -> JSONResponse:
    await gw.limit_ip(request)
    ctx = await gw.admit(tenant, "form", request)
    origin = request.headers.get("origin", "")
    try:
        body = await read_body(request, gw.body_limit(ctx))
        require_media(request, *ACCEPTED_BODIES)
        items = flat_items(request, body)
        form_key = request.headers.get(FORM_KEY_HEADER, "")

        def sender_check() -> None:
            check_origin(ctx, origin)
            check_form(ctx, items, form_key)

        request_log.check_sender(sender_check)
        mapped = map_fields(items, {}, ctx.config.field_map, skip=(FORM_KEY_FIELD, honeypot_field(ctx)))
        env = envelope(request, tenant, lead_pb2.SOURCE_FORM)
        env.idempotency_key = env.idempotency_key or request_log.implicit_idempotency_key()
        env.disclosure_text = ctx.option("disclosure_text")
        # The tenant's own form: it names the tenant unless configured otherwise, and this
        # submission, stored with the lead, is the consent's evidence reference.
        env.seller = ctx.option("seller") or tenant
        env.form_submission_id = "form:" + (env.idempotency_key or uuid.uuid4().hex)
        lead = build_lead(mapped, env, ctx.policy, strict=True)
        answer = stored_answer(await gw.store(lead))
    except GatewayError as err:
        # The page must be able to read why its submission was refused.
        err.headers.update(cors_headers(ctx, origin))
        raise
    answer.headers.update(cors_headers(ctx, origin))
    return answer

"""`POST /v1/leads`: our own API, bearer key per tenant, `Idempotency-Key`, optional Standard
Webhooks signature for tenants that set a `webhook_secret` on their `api` source."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from leadflow.v1 import dispatcher_pb2, lead_pb2
from leadflow_core import timestamps
from leadflow_gateway import request_log, signatures
from leadflow_gateway.ascii_text import check_header_token, check_id, is_digits
from leadflow_gateway.backends import SourceContext
from leadflow_gateway.body import JSON, parse_json, read_body, require_media
from leadflow_gateway.errors import bad_request, forbidden, not_found, unauthenticated
from leadflow_gateway.fields import MappedFields
from leadflow_gateway.ingest import Gateway
from leadflow_gateway.normalise import build_lead
from leadflow_gateway.sources.common import envelope, stored_answer

WEBHOOK_SECRET_PREFIX = "webhook_secret"  # noqa: S105 - a name, not a secret


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=10_000)


class ConsentIn(_In):
    granted: bool = False
    disclosure_text: str = ""
    consented_at: datetime | None = None
    page_url: str = Field("", max_length=2000)
    ip: str = Field("", max_length=64)
    user_agent: str = Field("", max_length=1000)
    trustedform_cert_url: str = Field("", max_length=2000)
    jornaya_leadid: str = Field("", max_length=64)
    seller: str = Field("", max_length=200)
    disclosure_version: str = Field("", max_length=200)
    form_submission_id: str = Field("", max_length=200)


class AddressIn(_In):
    street: str = Field("", max_length=500)
    city: str = Field("", max_length=200)
    state: str = Field("", max_length=100)
    postal_code: str = Field("", max_length=32)
    country: str = Field("", max_length=64)


class ApiLead(_In):
    """A lead submitted to the direct API."""

    phone: str = Field(
        min_length=1, max_length=64, description="Any format; parsed with the tenant's region."
    )
    first_name: str = Field("", max_length=200)
    last_name: str = Field("", max_length=200)
    full_name: str = Field("", max_length=400)
    email: str = Field("", max_length=254)
    message: str = ""
    urgency: Literal["emergency", "high", "medium", "low"] | None = None
    vendor_lead_id: str = Field("", max_length=256)
    campaign: str = Field(
        "", max_length=255, description="Leads of one person and campaign merge within the tenant's window."
    )
    address: AddressIn | None = None
    consent: ConsentIn | None = None
    custom_fields: dict[str, str] = Field(default_factory=dict, max_length=100)


def validation_field(err: ValidationError) -> tuple[str, str]:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "body"
    return loc, str(first["msg"])


def to_mapped(item: ApiLead) -> MappedFields:
    mapped = MappedFields()
    for name in (
        "first_name",
        "last_name",
        "full_name",
        "email",
        "phone",
        "message",
        "vendor_lead_id",
        "campaign",
    ):
        mapped.set(name, getattr(item, name), name)
    if item.urgency:
        mapped.set("urgency", item.urgency, "urgency")
    if item.address:
        for name, value in item.address.model_dump().items():
            mapped.set(name, value, f"address.{name}")
    if item.consent:
        c = item.consent
        mapped.set("consent.granted", "true" if c.granted else "false", "consent.granted")
        if c.consented_at is not None:
            mapped.set("consent.consented_at", c.consented_at.isoformat(), "consent.consented_at")
        for name in (
            "disclosure_text",
            "page_url",
            "ip",
            "user_agent",
            "trustedform_cert_url",
            "jornaya_leadid",
            "disclosure_version",
            "form_submission_id",
        ):
            mapped.set(f"consent.{name}", getattr(c, name), f"consent.{name}")
        mapped.set("consent.seller", c.seller, "consent.seller")
    for key, value in item.custom_fields.items():
        mapped.add_custom(key, value)
    return mapped


def parse(body: bytes) -> ApiLead:
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise bad_request("body", "body must be a JSON object")
    try:
        return ApiLead.model_validate(doc)
    except ValidationError as err:
        field, why = validation_field(err)
        raise bad_request(field, why) from err


def bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 512:
        raise unauthenticated("missing or malformed Authorization: Bearer <API key>")
    return token.strip()


def check_signature(ctx: SourceContext, request: Request, body: bytes, tolerance: int) -> str:
    """Verifies Standard Webhooks headers when the tenant set a secret; returns `webhook-id`."""
    secrets = ctx.secrets_with_prefix(WEBHOOK_SECRET_PREFIX)
    required = bool(secrets) or ctx.option("require_signature") == "true"
    if not required:
        return ""
    if request_log.replaying() is not None:
        # Verified at intake; only the id (the lead's idempotency key) matters now.
        return check_id("webhook-id", request.headers.get("webhook-id", ""))[:200]
    headers = {
        k: request.headers.get(k, "") for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }
    check_id("webhook-id", headers["webhook-id"])
    check_header_token("webhook-signature", headers["webhook-signature"])
    if headers["webhook-timestamp"] and not is_digits(headers["webhook-timestamp"].strip()):
        raise bad_request("webhook-timestamp", "must be Unix seconds in ASCII digits")
    if not signatures.verify_standard_webhook(secrets, headers, body, int(time.time()), tolerance):
        raise unauthenticated("missing or invalid webhook-signature")
    return headers["webhook-id"][:200]


async def authorised_tenant(gw: Gateway, request: Request, scope: str) -> str:
    """The tenant of the request's bearer key, when that key has `scope` (401 / 403 otherwise)."""
    key = await gw.backends.authenticate(bearer(request))
    if key is None:
        raise unauthenticated("unknown API key")
    if scope not in key.scopes:
        raise forbidden(f"this API key may not {scope} (its scopes: {', '.join(sorted(key.scopes))})")
    return key.tenant


async def handle(gw: Gateway, request: Request) -> JSONResponse:
    await gw.limit_ip(request)
    replay = request_log.replaying()
    # A replay's key is not kept in the log: the grant names the tenant.
    tenant = replay.tenant if replay is not None else await authorised_tenant(gw, request, "ingest")
    # The key names the tenant; an `api` source entry only adds settings (signatures, limits).
    ctx = await gw.admit_api(tenant, request)
    body = await read_body(request, gw.body_limit(ctx))
    require_media(request, JSON)
    webhook_id = check_signature(ctx, request, body, gw.settings.signature_tolerance_seconds)
    request_log.verified()
    item = parse(body)
    env = envelope(request, tenant, lead_pb2.SOURCE_API)
    env.idempotency_key = env.idempotency_key or webhook_id or request_log.implicit_idempotency_key()
    lead = build_lead(to_mapped(item), env, ctx.policy, strict=True)
    return stored_answer(await gw.store(lead))


_STATES = {
    dispatcher_pb2.DIAL_STATE_SCHEDULED: "scheduled",
    dispatcher_pb2.DIAL_STATE_DEFERRED: "deferred",
    dispatcher_pb2.DIAL_STATE_BLOCKED: "blocked",
    dispatcher_pb2.DIAL_STATE_DIALING: "dialing",
    dispatcher_pb2.DIAL_STATE_DIALED: "dialed",
}


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def _detail(raw: str) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return raw


async def timeline(gw: Gateway, request: Request, lead_id: str) -> JSONResponse:
    """`GET /v1/leads/{lead_id}/timeline`: only the key's own tenant's leads exist for it (404)."""
    await gw.limit_ip(request)
    tenant = await authorised_tenant(gw, request, "read")
    check_id("lead_id", lead_id)
    if not lead_id or len(lead_id) > 100:
        raise not_found("unknown lead")
    resp = await gw.backends.timeline(tenant, lead_id)
    events = [
        {
            "at": _iso(timestamps.from_proto(e.at)),
            "kind": e.kind,
            "detail": _detail(e.detail_json),
            "request_id": e.request_id,
        }
        for e in resp.events
    ]
    return JSONResponse(
        {"lead_id": lead_id, "dial_state": _STATES.get(resp.dial_state, "unknown"), "events": events}
    )

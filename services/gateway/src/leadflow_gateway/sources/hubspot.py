"""`POST /v1/webhooks/{tenant}/hubspot`: HubSpot workflow webhooks, `X-HubSpot-Signature-v3`
(base64 HMAC-SHA256 over method + URI + body + ms timestamp, 5-minute window); v1/v2 signatures
only when the tenant sets `allow_legacy_signatures`."""

from __future__ import annotations

import time
from typing import Any

from fastapi.responses import JSONResponse
from starlette.requests import Request

from leadflow.v1 import lead_pb2
from leadflow_gateway import request_log, signatures
from leadflow_gateway.ascii_text import check_header_token, check_id, is_digits
from leadflow_gateway.backends import SourceContext
from leadflow_gateway.body import JSON, parse_json, read_body, require_media
from leadflow_gateway.errors import bad_request, unauthenticated
from leadflow_gateway.fields import MappedFields, flatten, map_fields
from leadflow_gateway.ingest import Gateway
from leadflow_gateway.normalise import build_lead, parse_instant
from leadflow_gateway.sources.common import envelope, public_url, stored_answer

ALIASES = {
    "firstname": "first_name",
    "lastname": "last_name",
    "email": "email",
    "phone": "phone",
    "mobilephone": "phone",
    "message": "message",
    "address": "street",
    "city": "city",
    "state": "state",
    "zip": "postal_code",
    "country": "country",
    "hs_object_id": "vendor_lead_id",
    "objectid": "vendor_lead_id",
    "vid": "vendor_lead_id",
    "urgency": "urgency",
}
_ID_KEYS = ("hs_object_id", "objectId", "vid", "id")


def verify(ctx: SourceContext, request: Request, url: str, body: bytes, tolerance_s: int) -> None:
    secret = ctx.secret("client_secret", "app_secret")
    method = request.method
    v3 = request.headers.get("x-hubspot-signature-v3")
    for name in ("X-HubSpot-Signature-v3", "X-HubSpot-Signature", "X-HubSpot-Signature-Version"):
        check_header_token(name, request.headers.get(name))
    timestamp = request.headers.get("x-hubspot-request-timestamp")
    if timestamp is not None and not is_digits(timestamp.strip()):
        raise bad_request("X-HubSpot-Request-Timestamp", "must be milliseconds in ASCII digits")
    if v3 is not None:
        ok = signatures.verify_hubspot_v3(
            secret,
            method,
            url,
            body,
            request.headers.get("x-hubspot-request-timestamp"),
            v3,
            now_ms=int(time.time() * 1000),
            tolerance_ms=tolerance_s * 1000,
        )
        if not ok:
            raise unauthenticated("invalid or expired X-HubSpot-Signature-v3")
        return
    version = request.headers.get("x-hubspot-signature-version", "").lower()
    legacy = request.headers.get("x-hubspot-signature")
    if legacy is None:
        raise unauthenticated("missing X-HubSpot-Signature-v3")
    if ctx.option("allow_legacy_signatures") != "true":
        raise unauthenticated("HubSpot v1/v2 signatures are not accepted for this tenant")
    if not signatures.verify_hubspot_legacy(secret, version or "v1", method, url, body, legacy):
        raise unauthenticated("invalid X-HubSpot-Signature")


def _property_items(props: dict[str, Any]) -> list[tuple[str, str]]:
    """`{"firstname": {"value": "Ada", ...}}` (legacy workflow format) or `{"firstname": "Ada"}`."""
    items: list[tuple[str, str]] = []
    for name, value in props.items():
        if isinstance(value, dict):
            value = value.get("value", "")
        if isinstance(value, dict | list):
            continue
        items.append((str(name), "" if value is None else str(value)))
    return items


def parse(doc: Any, field_map: dict[str, str]) -> list[tuple[MappedFields, str]]:
    """One object (a workflow webhook) or an array of them; each becomes (fields, vendor id)."""
    objects = doc if isinstance(doc, list) else [doc]
    if not objects or len(objects) > 100:
        raise bad_request("body", "expected one to 100 objects")
    out: list[tuple[MappedFields, str]] = []
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise bad_request(f"{i}", "must be an object")
        props = obj.get("properties")
        items = _property_items(props) if isinstance(props, dict) else []
        items += [(k, v) for k, v in flatten({k: v for k, v in obj.items() if k != "properties"})]
        mapped = map_fields(items, ALIASES, field_map)
        key = next((k for k in _ID_KEYS if obj.get(k) not in (None, "")), "")
        vendor_id = check_id(f"{i}.{key}" if len(objects) > 1 else key, str(obj[key])) if key else ""
        out.append((mapped, mapped.get("vendor_lead_id") or vendor_id))
    return out


async def handle(gw: Gateway, request: Request, tenant: str) -> JSONResponse:
    await gw.limit_ip(request)
    ctx = await gw.admit(tenant, "hubspot", request)
    body = await read_body(request, gw.body_limit(ctx))
    url = public_url(request, gw.settings)
    request_log.check_sender(lambda: verify(ctx, request, url, body, gw.settings.signature_tolerance_seconds))
    require_media(request, JSON)
    leads = []
    for mapped, vendor_id in parse(parse_json(body), dict(ctx.config.field_map)):
        env = envelope(request, tenant, lead_pb2.SOURCE_HUBSPOT)
        env.vendor_lead_id = vendor_id
        env.vendor_updated_at = parse_instant(mapped.custom.get("lastmodifieddate", ""))
        leads.append(build_lead(mapped, env, ctx.policy, strict=False))
    stored = await gw.store_all(leads)
    if len(stored) == 1:
        return stored_answer(stored[0])
    return JSONResponse(
        {"leads": [s.answer() for s in stored]},
        status_code=200 if all(s.duplicate for s in stored) else 202,
    )

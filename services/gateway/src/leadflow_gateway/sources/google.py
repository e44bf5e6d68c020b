"""`POST /v1/webhooks/{tenant}/google`: Google Ads lead form webhooks (`user_column_data`), verified
by the `google_key` set on the form; `is_test` leads are stored but never dialed."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response
from starlette.requests import Request

from leadflow.v1 import lead_pb2
from leadflow_gateway import request_log, signatures
from leadflow_gateway.ascii_text import check_id
from leadflow_gateway.backends import SourceContext
from leadflow_gateway.body import JSON, parse_json_object, read_body, require_media
from leadflow_gateway.errors import bad_request, unauthenticated
from leadflow_gateway.fields import MappedFields, map_fields
from leadflow_gateway.ingest import Gateway
from leadflow_gateway.normalise import Envelope, build_lead
from leadflow_gateway.sources.common import empty_ok, envelope

# Google's column ids (lead form asset field types) -> Lead fields.
COLUMNS = {
    "FULL_NAME": "full_name",
    "FIRST_NAME": "first_name",
    "LAST_NAME": "last_name",
    "EMAIL": "email",
    "WORK_EMAIL": "email",
    "PHONE_NUMBER": "phone",
    "WORK_PHONE": "phone",
    "POSTAL_CODE": "postal_code",
    "STREET_ADDRESS": "street",
    "CITY": "city",
    "REGION": "state",
    "COUNTRY": "country",
}
# Envelope fields kept as custom fields for attribution.
KEPT = ("form_id", "campaign_id", "adgroup_id", "creative_id", "gcl_id", "api_version", "asset_group_id")


def parse(doc: dict[str, Any], field_map: dict[str, str]) -> tuple[MappedFields, str, bool]:
    """(fields, lead_id, is_test); unknown top-level fields are ignored, as Google asks."""
    lead_id = doc.get("lead_id")
    if not isinstance(lead_id, str) or not lead_id.strip():
        raise bad_request("lead_id", "lead_id is required")
    check_id("lead_id", lead_id)
    columns = doc.get("user_column_data", [])
    if not isinstance(columns, list):
        raise bad_request("user_column_data", "must be a list")
    items: list[tuple[str, str]] = []
    for i, col in enumerate(columns[:200]):
        if not isinstance(col, dict):
            raise bad_request(f"user_column_data.{i}", "must be an object")
        column_id = str(col.get("column_id", ""))
        value = col.get("string_value", "")
        value = "" if value is None else str(value)
        name = column_id if column_id in COLUMNS else str(col.get("column_name") or column_id)
        items.append((name, value))
    aliases = {k.lower(): v for k, v in COLUMNS.items()}
    mapped = map_fields(items, aliases, field_map)
    for key in KEPT:
        if doc.get(key) not in (None, ""):
            mapped.add_custom(f"google.{key}", check_id(key, _id_text(key, doc[key])))
    return mapped, lead_id.strip(), doc.get("is_test") is True


def _id_text(key: str, value: Any) -> str:
    """Google sends its ids as JSON numbers (or strings); anything else is malformed."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise bad_request(key, "must be a number or a string")
    return str(value)


def check_key(ctx: SourceContext, doc: dict[str, Any]) -> None:
    key = doc.get("google_key")
    if not signatures.shared_secret_matches(ctx.secret("google_key"), key if isinstance(key, str) else None):
        raise unauthenticated("google_key does not match")


async def handle(gw: Gateway, request: Request, tenant: str) -> Response:
    await gw.limit_ip(request)
    ctx = await gw.admit(tenant, "google", request)
    body = await read_body(request, gw.body_limit(ctx))
    require_media(request, JSON)
    doc = parse_json_object(body)
    request_log.check_sender(lambda: check_key(ctx, doc))
    mapped, lead_id, is_test = parse(doc, dict(ctx.config.field_map))
    env: Envelope = envelope(request, tenant, lead_pb2.SOURCE_GOOGLE)
    env.vendor_lead_id = lead_id
    env.is_test = is_test
    env.vendor_lead_id_field = "lead_id"
    # The campaign the form ran in: a person's leads from one campaign merge.
    env.campaign = mapped.custom.get("google.campaign_id", "")
    env.campaign_field = "campaign_id"
    lead = build_lead(mapped, env, ctx.policy, strict=False)
    await gw.store(lead, strict=False)
    # Google's contract: 200 with an empty body (new or redelivered alike).
    return empty_ok()

"""`GET|POST /v1/webhooks/{tenant}/meta`: Meta Lead Ads (Facebook and Instagram). GET answers the
subscription handshake; POST is verified by `X-Hub-Signature-256` over the raw bytes, and each
`leadgen` change is fetched from the Graph API with the page access token."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.requests import Request

from leadflow.v1 import lead_pb2
from leadflow_core.logs import get_logger
from leadflow_gateway import request_log, signatures
from leadflow_gateway.ascii_text import check_header_token, check_id, is_digits
from leadflow_gateway.backends import SourceContext
from leadflow_gateway.body import JSON, parse_json_object, read_body, require_media
from leadflow_gateway.errors import GatewayError, bad_request, unauthenticated, unavailable
from leadflow_gateway.fields import MappedFields, map_fields
from leadflow_gateway.ingest import Gateway, Stored
from leadflow_gateway.meta_graph import GraphLeadGone, GraphUnavailable
from leadflow_gateway.normalise import build_lead, parse_instant
from leadflow_gateway.sources.common import envelope

log = get_logger("leadflow.gateway.meta")

# Meta's standard lead form question names -> Lead fields (anything else is a custom question).
ALIASES = {
    "full_name": "full_name",
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
    "work_email": "email",
    "phone_number": "phone",
    "work_phone_number": "phone",
    "street_address": "street",
    "city": "city",
    "state": "state",
    "province": "state",
    "zip_code": "postal_code",
    "post_code": "postal_code",
    "country": "country",
}
MAX_CHANGES = 200
FETCH_CONCURRENCY = 8


@dataclass(frozen=True)
class LeadgenChange:
    leadgen_id: str
    page_id: str
    form_id: str
    ad_id: str
    adgroup_id: str
    created_time: str


def handshake(ctx: SourceContext, params: dict[str, str]) -> str:
    """The `hub.challenge` to echo, when mode and verify token match."""
    token = ctx.secret("verify_token")
    if params.get("hub.mode") != "subscribe" or not signatures.shared_secret_matches(
        token, params.get("hub.verify_token")
    ):
        raise unauthenticated("verify token does not match")
    challenge = params.get("hub.challenge", "")
    if not challenge or len(challenge) > 200:
        raise bad_request("hub.challenge", "missing or too long")
    return challenge


def _text(value: Any) -> str:
    return "" if value is None or isinstance(value, dict | list) else str(value)


def parse_notification(doc: dict[str, Any]) -> list[LeadgenChange]:
    """Every `leadgen` change of every entry; other fields (feed, ...) are ignored."""
    if doc.get("object") not in ("page", "instagram"):
        raise bad_request("object", "expected a page subscription")
    entries = doc.get("entry")
    if not isinstance(entries, list):
        raise bad_request("entry", "must be a list")
    out: list[LeadgenChange] = []
    for i, entry in enumerate(entries):
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            raise bad_request(f"entry.{i}.changes", "must be a list")
        for j, change in enumerate(changes):
            if not isinstance(change, dict) or change.get("field") != "leadgen":
                continue
            value = change.get("value")
            leadgen_id = _text(value.get("leadgen_id")) if isinstance(value, dict) else ""
            at = f"entry.{i}.changes.{j}.value"
            if not isinstance(value, dict) or not is_digits(leadgen_id) or len(leadgen_id) > 64:
                raise bad_request(f"{at}.leadgen_id", "missing or not ASCII digits")
            ids = {
                "page_id": _text(value.get("page_id") or entry.get("id")),
                "form_id": _text(value.get("form_id")),
                "ad_id": _text(value.get("ad_id")),
                "adgroup_id": _text(value.get("adgroup_id")),
            }
            for name, text in ids.items():
                check_id(f"{at}.{name}", text)
            out.append(
                LeadgenChange(
                    leadgen_id=leadgen_id,
                    created_time=check_id(f"{at}.created_time", _text(value.get("created_time"))),
                    **ids,
                )
            )
    if len(out) > MAX_CHANGES:
        raise bad_request("entry", f"at most {MAX_CHANGES} leadgen changes per delivery")
    return out


def map_graph_lead(doc: dict[str, Any], change: LeadgenChange, field_map: dict[str, str]) -> MappedFields:
    """`field_data: [{"name", "values": [...]}]`; multi-choice answers are joined."""
    items: list[tuple[str, str]] = []
    field_data = doc.get("field_data", [])
    for item in field_data if isinstance(field_data, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        values = item.get("values", [])
        text = ", ".join(_text(v) for v in values) if isinstance(values, list) else _text(values)
        items.append((item["name"], text))
    mapped = map_fields(items, ALIASES, field_map)
    for key in ("page_id", "form_id", "ad_id", "adgroup_id"):
        value = getattr(change, key)
        if value:
            mapped.add_custom(f"meta.{key}", value)
    return mapped


def page_token(ctx: SourceContext, page_id: str) -> str:
    """A token per page (`page_access_token_<page id>`) or one for every page."""
    return ctx.secret(f"page_access_token_{page_id}", "page_access_token", "access_token")


async def verify_subscription(gw: Gateway, request: Request, tenant: str) -> PlainTextResponse:
    await gw.limit_ip(request)
    ctx = await gw.admit(tenant, "meta", request)
    return PlainTextResponse(handshake(ctx, dict(request.query_params)))


def check_signature(ctx: SourceContext, request: Request, body: bytes) -> None:
    check_header_token("X-Hub-Signature-256", request.headers.get("x-hub-signature-256"))
    if not signatures.verify_meta(ctx.secret("app_secret"), body, request.headers.get("x-hub-signature-256")):
        raise unauthenticated("missing or invalid X-Hub-Signature-256")


async def handle(gw: Gateway, request: Request, tenant: str) -> JSONResponse:
    await gw.limit_ip(request)
    ctx = await gw.admit(tenant, "meta", request)
    body = await read_body(request, gw.body_limit(ctx))
    request_log.check_sender(lambda: check_signature(ctx, request, body))
    require_media(request, JSON)
    changes = parse_notification(parse_json_object(body))
    # A redelivery names leads already stored: answer those from the store, fetch only the rest.
    known = await gw.backends.find_leads(tenant, lead_pb2.SOURCE_META, [c.leadgen_id for c in changes])
    fresh = [c for c in changes if c.leadgen_id not in known]
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def fetch(change: LeadgenChange) -> dict[str, Any] | None:
        async with gate:
            try:
                return await gw.graph.fetch_lead(change.leadgen_id, page_token(ctx, change.page_id))
            except GraphLeadGone as err:
                # Redelivery cannot bring back a deleted lead: skip it, keep the others.
                log.warning("meta_lead_unavailable", leadgen_id=change.leadgen_id, error=str(err))
                return None

    try:
        fetched = await asyncio.gather(*(fetch(c) for c in fresh))
    except GraphUnavailable as err:
        raise unavailable("Graph API unavailable; retry later", gw.settings.retry_after_seconds) from err
    leads: list[lead_pb2.Lead] = []
    for change, graph in zip(fresh, fetched, strict=True):
        if graph is None:
            continue
        env = envelope(request, tenant, lead_pb2.SOURCE_META)
        env.vendor_lead_id = change.leadgen_id
        env.vendor_updated_at = parse_instant(_text(graph.get("created_time")) or change.created_time)
        env.page_url = ""
        env.vendor_lead_id_field = "leadgen_id"
        # Meta names no campaign in the notification; the lead form is the campaign it answers.
        env.campaign = change.form_id
        env.campaign_field = "form_id"
        try:
            mapped = map_graph_lead(graph, change, dict(ctx.config.field_map))
            leads.append(build_lead(mapped, env, ctx.policy, strict=False))
        except GatewayError as err:
            log.warning("meta_lead_unusable", leadgen_id=change.leadgen_id, field=err.field)
    stored = await gw.store_all(leads)
    answers = {v: Stored(resp.lead_id, True, resp).answer() for v, resp in known.items()}
    answers.update({lead.vendor_lead_id: s.answer() for lead, s in zip(leads, stored, strict=True)})
    # In the notification's order; a lead skipped as gone or unusable has no answer.
    ordered = [answers[c.leadgen_id] for c in changes if c.leadgen_id in answers]
    return JSONResponse({"leads": ordered}, status_code=200)

"""`POST /v1/webhooks/{tenant}/salesforce[/{path token}]`: Salesforce Outbound Messages (SOAP 1.1),
parsed without DTDs or entity expansion, checked against the tenant's organisation ids, answered
with the `Ack` only once every notification in the message is stored.

Outbound Messages carry no signature, and the organisation id in the body is no secret. So a
source may set a `path_token` secret: the endpoint URL configured in Salesforce then ends in it,
any other path (the bare one included) is an unknown source (404), and the token is compared in
constant time. With `allowedSourceRanges` (Salesforce's published networks) the sender is checked
too."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from fastapi.responses import Response
from starlette.requests import Request

from leadflow.v1 import lead_pb2
from leadflow_core.logs import get_logger
from leadflow_gateway import request_log
from leadflow_gateway.ascii_text import is_alnum
from leadflow_gateway.backends import SourceContext
from leadflow_gateway.body import read_body, require_media
from leadflow_gateway.errors import GatewayError, bad_request, not_found, unauthenticated
from leadflow_gateway.fields import MappedFields, map_fields
from leadflow_gateway.ingest import Gateway
from leadflow_gateway.normalise import build_lead, parse_instant
from leadflow_gateway.sources.common import envelope

log = get_logger("leadflow.gateway.salesforce")

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100
PATH_TOKEN = "path_token"  # noqa: S105 (the secret's name)
ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    "<soapenv:Body>"
    '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    "<Ack>true</Ack>"
    "</notificationsResponse>"
    "</soapenv:Body>"
    "</soapenv:Envelope>"
)
ALIASES = {
    "firstname": "first_name",
    "lastname": "last_name",
    "name": "full_name",
    "email": "email",
    "phone": "phone",
    "mobilephone": "phone",
    "description": "message",
    "street": "street",
    "city": "city",
    "state": "state",
    "statecode": "state",
    "postalcode": "postal_code",
    "country": "country",
    "countrycode": "country",
}


@dataclass(frozen=True)
class Notification:
    notification_id: str
    object_type: str
    fields: list[tuple[str, str]]


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    action_id: str
    notifications: list[Notification]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(el: Element, name: str) -> str:
    for child in el:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return ""


def parse(body: bytes) -> OutboundMessage:
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (SafeET.ParseError, DefusedXmlException, ValueError) as err:
        raise bad_request("body", f"not acceptable SOAP XML ({type(err).__name__})") from err
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise bad_request("Envelope", "expected a SOAP 1.1 envelope")
    notifications_el = root.find(f"{{{SOAP_ENV}}}Body/{{{OUTBOUND}}}notifications")
    if notifications_el is None:
        raise bad_request("notifications", "no outbound message notifications")
    org = _child_text(notifications_el, "OrganizationId")
    if len(org) not in (15, 18) or not is_alnum(org):
        raise bad_request("OrganizationId", "must be a 15 or 18 character organisation id")
    items = notifications_el.findall(f"{{{OUTBOUND}}}Notification")
    if not items:
        raise bad_request("Notification", "at least one notification is required")
    if len(items) > MAX_NOTIFICATIONS:
        raise bad_request("Notification", f"at most {MAX_NOTIFICATIONS} notifications per message")
    out: list[Notification] = []
    for i, item in enumerate(items):
        nid = _child_text(item, "Id")
        if not nid or len(nid) > 18 or not is_alnum(nid):
            raise bad_request(f"Notification.{i}.Id", "missing or malformed")
        sobject = item.find(f"{{{OUTBOUND}}}sObject")
        if sobject is None:
            raise bad_request(f"Notification.{i}.sObject", "missing")
        object_type = sobject.get(f"{{{XSI}}}type", "").rsplit(":", 1)[-1]
        fields = [
            (_local(child.tag), (child.text or "").strip())
            for child in sobject
            if child.get(f"{{{XSI}}}nil") != "true" and len(child) == 0
        ]
        out.append(Notification(nid, object_type, fields))
    return OutboundMessage(org, _child_text(notifications_el, "ActionId"), out)


def org_allowed(ctx: SourceContext, org: str) -> bool:
    # A 15-character id is the case-sensitive prefix of its 18-character form.
    allowed = ctx.option_list("allowed_org_ids")
    return any(org == a or org[:15] == a[:15] for a in allowed if len(a) in (15, 18))


def to_mapped(n: Notification, field_map: dict[str, str]) -> MappedFields:
    mapped = map_fields(n.fields, ALIASES, field_map, skip=("Id",))
    record_id = next((v for k, v in n.fields if k == "Id"), "")
    if record_id:
        mapped.add_custom("salesforce.record_id", record_id)
    mapped.add_custom("salesforce.object_type", n.object_type)
    return mapped


def check_org(ctx: SourceContext, organization_id: str) -> None:
    if not org_allowed(ctx, organization_id):
        raise unauthenticated("organisation id not allowed for this tenant")


def path_token_matches(ctx: SourceContext, given: str) -> bool:
    """The path's token is the source's `path_token` (none set: the path must carry none)."""
    expected = ctx.config.secrets.get(PATH_TOKEN, "")
    return hmac.compare_digest(expected.encode(), given.encode())


async def handle(gw: Gateway, request: Request, tenant: str, path_token: str = "") -> Response:
    await gw.limit_ip(request)
    ctx = await gw.admit(tenant, "salesforce", request)
    # A replay runs the logged path, kept without its token (request_log.logged_path).
    if request_log.replaying() is None and not path_token_matches(ctx, path_token):
        raise not_found("unknown tenant or source")
    body = await read_body(request, gw.body_limit(ctx, gw.settings.salesforce_max_body_bytes))
    require_media(request, "text/xml", "application/soap+xml", "application/xml")
    message = parse(body)
    request_log.check_sender(lambda: check_org(ctx, message.organization_id))
    leads = []
    for n in message.notifications:
        env = envelope(request, tenant, lead_pb2.SOURCE_SALESFORCE)
        env.vendor_lead_id = n.notification_id
        env.vendor_lead_id_field = "Notification.Id"
        env.vendor_updated_at = parse_instant(next((v for k, v in n.fields if k == "LastModifiedDate"), ""))
        try:
            leads.append(build_lead(to_mapped(n, dict(ctx.config.field_map)), env, ctx.policy, strict=False))
        except GatewayError as err:
            # One unusable record must not make Salesforce redeliver the other 99 for a day.
            log.warning("salesforce_record_unusable", notification_id=n.notification_id, field=err.field)
    # Any failure raises (503): Salesforce redelivers and stored notifications come back as duplicates.
    await gw.store_all(leads)
    return Response(ACK, media_type="text/xml; charset=utf-8")

"""Vendor deliveries built from each vendor's documented examples, signed the way the vendor signs."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

from leadflow_gateway import signatures

META_APP_SECRET = "meta-app-secret-0123456789"
META_VERIFY_TOKEN = "meta-verify-token"
META_PAGE_TOKEN = "EAAB-page-token"
HUBSPOT_CLIENT_SECRET = "hubspot-client-secret-1234"
SF_ORG_ID = "00D5g000004FakeEAB"
GOOGLE_KEY = "google-form-key-42"
ZAPIER_SECRET = "zap-shared-secret"
MARKETO_SECRET = "marketo-shared-secret"
FORM_KEY = "form-key-abc"
TWILIO_AUTH_TOKEN = "twilio-auth-token-12345"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WEBHOOK_SECRET_NEW = "whsec_c2Vjb25kLWtleS1mb3Itcm90YXRpb24tdGVzdA=="


def meta_notification(changes: list[tuple[str, str]], page_id: str = "1234567890") -> bytes:
    """Meta's leadgen webhook (Webhooks for Lead Ads): ids only, many changes per entry.

    Serialised like Meta does: compact, non-ASCII escaped."""
    doc = {
        "object": "page",
        "entry": [
            {
                "id": page_id,
                "time": 1700000000,
                "changes": [
                    {
                        "field": "leadgen",
                        "value": {
                            "ad_id": "444444444",
                            "form_id": form_id,
                            "leadgen_id": leadgen_id,
                            "created_time": 1700000000,
                            "page_id": page_id,
                            "adgroup_id": "555555555",
                        },
                    }
                    for leadgen_id, form_id in changes
                ],
            }
        ],
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode()


def meta_headers(body: bytes, secret: str = META_APP_SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signatures.meta_signature(secret, body),
    }


def hubspot_workflow_body(object_id: int, phone: str, message: str = "") -> bytes:
    """A workflow "Send a webhook" delivery of a contact (properties with values)."""
    doc = {
        "objectId": object_id,
        "objectType": "CONTACT",
        "properties": {
            "firstname": {"value": "Ada", "timestamp": 1700000000000},
            "lastname": {"value": "Lovelace", "timestamp": 1700000000000},
            "email": {"value": "Ada.Lovelace@Example.com"},
            "phone": {"value": phone},
            "message": {"value": message},
            "hs_object_id": {"value": str(object_id)},
        },
    }
    return json.dumps(doc).encode()


def hubspot_headers(
    url: str, body: bytes, secret: str = HUBSPOT_CLIENT_SECRET, timestamp_ms: int | None = None
) -> dict[str, str]:
    ts = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": ts,
        "X-HubSpot-Signature-v3": signatures.hubspot_v3_signature(secret, "POST", url, body, ts),
    }


def salesforce_message(notifications: list[tuple[str, str, str]], org_id: str = SF_ORG_ID) -> bytes:
    """An Outbound Message as in Salesforce's WSDL: (notification Id, lead Id, phone) per notification."""
    items = "".join(
        f"""
  <Notification>
   <Id>{nid}</Id>
   <sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
    <sf:Id>{lead_id}</sf:Id>
    <sf:Company>Acme</sf:Company>
    <sf:Description>Basement is flooding, please call</sf:Description>
    <sf:Email>grace@example.com</sf:Email>
    <sf:FirstName>Grace</sf:FirstName>
    <sf:LastModifiedDate>2024-03-01T10:00:00.000Z</sf:LastModifiedDate>
    <sf:LastName>Hopper</sf:LastName>
    <sf:Phone>{phone}</sf:Phone>
    <sf:MobilePhone xsi:nil="true"/>
   </sObject>
  </Notification>"""
        for nid, lead_id, phone in notifications
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org_id}</OrganizationId>
   <ActionId>04k5g000000FakeAAA</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/59.0/00D5g000004Fake</EnterpriseUrl>
   <PartnerUrl>https://example.my.salesforce.com/services/Soap/u/59.0/00D5g000004Fake</PartnerUrl>{items}
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>""".encode()


SF_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


def google_body(
    lead_id: str,
    phone: str,
    is_test: bool = False,
    key: str = GOOGLE_KEY,
    email: str = "alan@example.com",
    campaign_id: int = 7654321,
) -> bytes:
    """Google Ads lead form webhook, as in Google's documented sample."""
    doc: dict[str, Any] = {
        "lead_id": lead_id,
        "user_column_data": [
            {"column_name": "Full Name", "string_value": "Alan Turing", "column_id": "FULL_NAME"},
            {"column_name": "User Phone", "string_value": phone, "column_id": "PHONE_NUMBER"},
            {"column_name": "User Email", "string_value": email, "column_id": "EMAIL"},
            {"column_name": "Postal Code", "string_value": "33101", "column_id": "POSTAL_CODE"},
            {
                "column_name": "What do you need?",
                "string_value": "gas smell in kitchen",
                "column_id": "SERVICE",
            },
        ],
        "api_version": "1.0",
        "form_id": 1234567,
        "campaign_id": campaign_id,
        "google_key": key,
        "is_test": is_test,
        "gcl_id": "EAIaIQobChMI-test",
        "adgroup_id": 20000000000,
        "creative_id": 30000000000,
    }
    return json.dumps(doc).encode()


def twilio_status(call_sid: str, status: str = "completed") -> list[tuple[str, str]]:
    return [
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("ApiVersion", "2010-04-01"),
        ("CallDuration", "42"),
        ("CallSid", call_sid),
        ("CallStatus", status),
        ("Direction", "outbound-api"),
        ("From", "+15005550006"),
        ("To", "+13055550123"),
    ]


def twilio_request(
    url: str, params: list[tuple[str, str]], token: str = TWILIO_AUTH_TOKEN
) -> tuple[bytes, dict[str, str]]:
    return urlencode(params).encode(), {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signatures.twilio_signature(token, url, params),
    }


def standard_webhook_headers(secret: str, msg_id: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    t = str(ts if ts is not None else int(time.time()))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": t,
        "webhook-signature": signatures.standard_webhook_signature(secret, msg_id, t, body),
    }

"""The request bodies of the webhook routes as the vendors send them, for the OpenAPI document.

These models describe the wire formats (with each vendor's documented example); the handlers
parse the raw bytes themselves (signatures are over the bytes), so nothing here validates.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from leadflow_gateway.sources.salesforce import OUTBOUND, SOAP_ENV


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class MetaLeadgenValue(_Doc):
    leadgen_id: str = Field(description="The lead's id (ASCII digits); fetched from the Graph API.")
    page_id: str = ""
    form_id: str = Field("", description="The lead form; used as the lead's campaign.")
    adgroup_id: str = ""
    ad_id: str = ""
    created_time: int | str = Field(0, description="Unix seconds.")


class MetaChange(_Doc):
    field: str = Field(description='Only "leadgen" changes are read.')
    value: MetaLeadgenValue


class MetaEntry(_Doc):
    id: str = Field(description="The page id.")
    time: int = 0
    changes: list[MetaChange]


class MetaNotification(_Doc):
    """Meta Lead Ads webhook (ids only); signed with `X-Hub-Signature-256` over the raw bytes."""

    object: Literal["page", "instagram"]
    entry: list[MetaEntry]


class HubSpotProperty(_Doc):
    value: str | int | float | bool | None = None
    timestamp: int | None = None


class HubSpotObject(_Doc):
    """A HubSpot workflow "Send a webhook" delivery of a contact; a body may also be an array
    of up to 100 of these. Signed with `X-HubSpot-Signature-v3` and `X-HubSpot-Request-Timestamp` (ms)."""

    objectId: int | str | None = Field(None, description="Deduplication id (or hs_object_id, vid, id).")
    objectType: str | None = None
    properties: dict[str, HubSpotProperty | str | int | float | bool | None] = Field(
        default_factory=dict, description='`{"firstname": {"value": "Ada"}}` or `{"firstname": "Ada"}`.'
    )


class GoogleColumn(_Doc):
    column_id: str = Field(description="FULL_NAME, FIRST_NAME, LAST_NAME, EMAIL, PHONE_NUMBER, ...")
    column_name: str = ""
    string_value: str = ""


class GoogleLeadForm(_Doc):
    """Google Ads lead form webhook; unknown fields are ignored, as Google asks."""

    lead_id: str
    user_column_data: list[GoogleColumn]
    api_version: str = "1.0"
    form_id: int | str | None = None
    campaign_id: int | str | None = Field(None, description="Becomes the lead's campaign.")
    google_key: str = Field(description="Must equal the key set on the form.")
    is_test: bool = False
    gcl_id: str | None = None
    adgroup_id: int | str | None = None
    creative_id: int | str | None = None


class MappedFields(_Doc):
    """Flat fields built by the sender (a Zap, a Marketo template, a web form); the tenant's
    `fieldMap` and the common names (phone, email, first_name, campaign, consent, ...) place
    them; everything else is kept as custom fields. JSON (nested keys dotted) or form-urlencoded."""

    phone: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    message: str | None = None
    campaign: str | None = Field(None, description="Leads of one person and campaign merge.")


class WebForm(MappedFields):
    """A website form post; `form_key` (or `X-Form-Key`) authenticates it, and a non-empty
    honeypot field (default `_honeypot`) refuses it."""

    form_key: str | None = None
    consent: str | None = Field(None, description='"true" when the consent box was ticked.')
    consent_text: str | None = None
    xxTrustedFormCertUrl: str | None = None
    leadid_token: str | None = None


class TwilioStatusCallback(_Doc):
    """Twilio's call status callback, form-urlencoded; signed with `X-Twilio-Signature`."""

    CallSid: str
    AccountSid: str
    CallStatus: Literal[
        "queued",
        "initiated",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "no-answer",
        "failed",
        "canceled",
    ]
    CallDuration: str | None = Field(None, description="Whole seconds, ASCII digits.")
    To: str | None = None
    From: str | None = None
    Direction: str | None = None
    ApiVersion: str | None = None


EXAMPLES: dict[str, Any] = {
    "MetaNotification": {
        "object": "page",
        "entry": [
            {
                "id": "1234567890",
                "time": 1700000000,
                "changes": [
                    {
                        "field": "leadgen",
                        "value": {
                            "ad_id": "444444444",
                            "form_id": "987654321",
                            "leadgen_id": "123123123123",
                            "created_time": 1700000000,
                            "page_id": "1234567890",
                            "adgroup_id": "555555555",
                        },
                    }
                ],
            }
        ],
    },
    "HubSpotObject": {
        "objectId": 901,
        "objectType": "CONTACT",
        "properties": {
            "firstname": {"value": "Ada"},
            "lastname": {"value": "Lovelace"},
            "email": {"value": "ada@example.com"},
            "phone": {"value": "+12125550100"},
        },
    },
    "GoogleLeadForm": {
        "lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789",
        "user_column_data": [
            {"column_name": "Full Name", "string_value": "Alan Turing", "column_id": "FULL_NAME"},
            {"column_name": "User Phone", "string_value": "+12125550140", "column_id": "PHONE_NUMBER"},
            {"column_name": "User Email", "string_value": "alan@example.com", "column_id": "EMAIL"},
        ],
        "api_version": "1.0",
        "form_id": 1234567,
        "campaign_id": 7654321,
        "google_key": "the-key-set-on-the-form",
        "is_test": True,
        "gcl_id": "EAIaIQobChMI-test",
        "adgroup_id": 20000000000,
        "creative_id": 30000000000,
    },
    "MappedFields": {"Lead Phone": "212 555 0150", "Lead Name": "Zed Zapper", "campaign": "spring-hvac"},
    "WebForm": {
        "form_key": "form-key",
        "first_name": "Ada",
        "phone": "(212) 555-0100",
        "email": "ada@example.com",
        "consent": "true",
        "campaign": "spring-hvac",
    },
    "TwilioStatusCallback": {
        "CallSid": "CA00000000000000000000000000000000",
        "AccountSid": "AC00000000000000000000000000000000",
        "CallStatus": "completed",
        "CallDuration": "42",
        "To": "+13055550123",
        "From": "+15005550006",
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
    },
}

API_EXAMPLE: dict[str, Any] = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "phone": "+12125550123",
    "email": "ada@example.com",
    "campaign": "spring-hvac",
    "message": "no heat since last night",
    "consent": {
        "granted": True,
        "disclosure_text": "By submitting you agree ACME may call you using an autodialer.",
        "consented_at": "2026-11-30T10:00:00Z",
        "trustedform_cert_url": "https://cert.trustedform.com/0123456789abcdef0123456789abcdef01234567",
    },
}
META_HANDSHAKE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "hub.mode",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "enum": ["subscribe"]},
    },
    {"name": "hub.verify_token", "in": "query", "required": True, "schema": {"type": "string"}},
    {
        "name": "hub.challenge",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "maxLength": 200},
        "description": "Echoed as the plain-text answer when the verify token matches.",
    },
]

SALESFORCE_EXAMPLE = f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="{OUTBOUND}">
   <OrganizationId>00D5g000004FakeEAB</OrganizationId>
   <ActionId>04k5g000000FakeAAA</ActionId>
   <EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/59.0/00D5g000004Fake</EnterpriseUrl>
   <PartnerUrl>https://example.my.salesforce.com/services/Soap/u/59.0/00D5g000004Fake</PartnerUrl>
   <Notification>
    <Id>04l5g0000000001AAA</Id>
    <sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>00Q5g000001FakeAAA</sf:Id>
     <sf:FirstName>Grace</sf:FirstName>
     <sf:LastName>Hopper</sf:LastName>
     <sf:Phone>+12125550100</sf:Phone>
     <sf:LastModifiedDate>2024-03-01T10:00:00.000Z</sf:LastModifiedDate>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"""


def _xml(name: str, props: dict[str, Any], namespace: str = OUTBOUND, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "xml": {"name": name, "namespace": namespace}, "properties": props, **extra}


_TEXT = {"type": "string"}
SALESFORCE_SCHEMA: dict[str, Any] = _xml(
    "Envelope",
    {
        "Body": _xml(
            "Body",
            {
                "notifications": _xml(
                    "notifications",
                    {
                        "OrganizationId": {
                            **_TEXT,
                            "minLength": 15,
                            "maxLength": 18,
                            "description": "Checked against the tenant's allowed_org_ids.",
                        },
                        "ActionId": _TEXT,
                        "SessionId": _TEXT,
                        "EnterpriseUrl": _TEXT,
                        "PartnerUrl": _TEXT,
                        "Notification": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 100,
                            "items": _xml(
                                "Notification",
                                {
                                    "Id": {
                                        **_TEXT,
                                        "description": "Deduplication id (ASCII letters and digits).",
                                    },
                                    "sObject": {
                                        "type": "object",
                                        "description": 'xsi:type="sf:Lead" (or another object): its '
                                        "fields (FirstName, LastName, Email, Phone, ...) as child elements.",
                                        "additionalProperties": _TEXT,
                                    },
                                },
                            ),
                        },
                    },
                    required=["OrganizationId", "Notification"],
                )
            },
            namespace=SOAP_ENV,
        )
    },
    namespace=SOAP_ENV,
    description="Salesforce Outbound Message, SOAP 1.1 (no DTDs or entities).",
)

MODELS: tuple[type[BaseModel], ...] = (
    MetaNotification,
    HubSpotObject,
    GoogleLeadForm,
    MappedFields,
    WebForm,
    TwilioStatusCallback,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict[str, Any], example: Any, *media: str) -> dict[str, Any]:
    return {m: {"schema": schema, "example": example} for m in media}


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def body(name: str, *media: str, description: str = "") -> dict[str, Any]:
    """`openapi_extra` with the request body `name` in each media type."""
    return {
        "requestBody": {
            "required": True,
            "description": description or (MODELS_BY_NAME[name].__doc__ or "").strip(),
            "content": _content(_ref(name), EXAMPLES[name], *(media or (JSON,))),
        }
    }


def hubspot_body() -> dict[str, Any]:
    one = _ref("HubSpotObject")
    schema = {"oneOf": [one, {"type": "array", "items": one, "minItems": 1, "maxItems": 100}]}
    return {
        "requestBody": {
            "required": True,
            "description": (HubSpotObject.__doc__ or "").strip(),
            "content": _content(schema, EXAMPLES["HubSpotObject"], JSON),
        }
    }


def salesforce_body() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": SALESFORCE_SCHEMA["description"],
            "content": _content(SALESFORCE_SCHEMA, SALESFORCE_EXAMPLE, "text/xml", "application/soap+xml"),
        }
    }


MODELS_BY_NAME = {m.__name__: m for m in MODELS}


def component_schemas() -> dict[str, Any]:
    """Every model's JSON schema, for `components.schemas`."""
    out: dict[str, Any] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out

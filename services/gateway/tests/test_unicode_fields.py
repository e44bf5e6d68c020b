"""Arbitrary Unicode in every parsed field of every source, in an otherwise valid, signed
delivery: never a 5xx, and a refusal leaves nothing behind (no lead, event, job or status)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlencode
from xml.sax.saxutils import escape

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway.tests import gateway_vendors as v
from services.gateway.tests.harness import SECRETS, Harness, all_sources_spec

T = "fuzz"
# Digits that are not ASCII, NUL and other controls, separators: each once among the examples.
TRAPS = ["²", "٣", "\uff11", "\x00", "\x01", "\x1f", "\x7f", "\x85", "\u2028", "\ufeff", "\u07c0", "\u09ea"]
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=24),
    st.sampled_from(TRAPS),
    st.builds(
        lambda a, trap, b: a + trap + b,
        st.from_regex(r"[0-9]{0,10}", fullmatch=True),
        st.sampled_from(TRAPS),
        st.from_regex(r"[0-9]{0,4}", fullmatch=True),
    ),
)
# What a header can carry at all (latin-1, no line breaks): "²", "³", "¹" and "\xa0" are in it.
HEADER_TEXT = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=24),
    st.sampled_from(["17000000²", "¹²³", "1700000000000\xa0"]),
).map(str.strip)
FUZZ = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

Request = tuple[str, bytes, dict[str, str]]


def uid() -> str:
    return uuid.uuid4().hex[:12]


def api(h: Harness, field: str, value: str) -> Request:
    doc: dict[str, object] = {
        "phone": "+12125550180",
        "first_name": "Fuzz",
        "email": f"{uid()}@example.com",
        "campaign": "c",
        "vendor_lead_id": uid(),
        "message": "hello",
        "consent": {"granted": True, "consented_at": "2026-11-30T10:00:00Z"},
        "custom_fields": {"k": "v"},
    }
    if field == "consent.consented_at":
        doc["consent"] = {"granted": True, "consented_at": value}
    elif field == "custom_fields":
        doc["custom_fields"] = {value: value}
    else:
        doc[field] = value
    headers = {"Authorization": f"Bearer {h.api_keys[T]}", "Content-Type": "application/json"}
    return "/v1/leads", json.dumps(doc).encode(), headers


def api_header(h: Harness, field: str, value: str) -> Request:
    path, body, headers = api(h, "first_name", "Fuzz")
    return path, body, {**headers, field: value}


def form(_: Harness, field: str, value: str) -> Request:
    doc = {
        "form_key": v.FORM_KEY,
        "phone": "(212) 555-0181",
        "email": f"{uid()}@example.com",
        "first_name": "Fuzz",
        "consent": "true",
        "consented_at": "2026-11-30T10:00:00Z",
        "campaign": "c",
    }
    doc[field] = value
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": uid()}
    return f"/v1/webhooks/{T}/form", urlencode(doc).encode(), headers


def google(_: Harness, field: str, value: str) -> Request:
    doc = json.loads(v.google_body(uid(), "+12125550182", email=f"{uid()}@example.com"))
    columns = {"phone": 1, "email": 2, "postal_code": 3}
    if field in columns:
        doc["user_column_data"][columns[field]]["string_value"] = value
    elif field == "column_id":
        doc["user_column_data"][0]["column_id"] = value
    else:
        doc[field] = value
    return f"/v1/webhooks/{T}/google", json.dumps(doc).encode(), {"Content-Type": "application/json"}


def meta(h: Harness, field: str, value: str) -> Request:
    leadgen_id = str(int(time.time() * 1000)) + str(uuid.uuid4().int % 1000)
    answers = {"full_name": ["Fuzz"], "phone_number": ["+12125550183"], "email": [f"{uid()}@example.com"]}
    if field.startswith("graph."):
        answers[field.removeprefix("graph.")] = [value]
    h.graph.add_lead(leadgen_id, answers, "2024-03-01T10:00:00+0000")
    doc = json.loads(v.meta_notification([(leadgen_id, "9100")]))
    change = doc["entry"][0]["changes"][0]["value"]
    if not field.startswith("graph."):
        change[field] = value
    body = json.dumps(doc, separators=(",", ":")).encode()
    return f"/v1/webhooks/{T}/meta", body, v.meta_headers(body)


def meta_header(h: Harness, field: str, value: str) -> Request:
    path, body, headers = meta(h, "form_id", "9100")
    return path, body, {**headers, field: value}


def hubspot(h: Harness, field: str, value: str) -> Request:
    doc = json.loads(
        v.hubspot_workflow_body(int(time.time() * 1000) + uuid.uuid4().int % 1000, "+12125550184")
    )
    doc["properties"]["email"] = {"value": f"{uid()}@example.com"}
    if field == "objectId":
        doc["objectId"] = value
        doc["properties"].pop("hs_object_id")
    else:
        doc["properties"][field] = {"value": value}
    body = json.dumps(doc).encode()
    url = f"{h.url}/v1/webhooks/{T}/hubspot"
    return f"/v1/webhooks/{T}/hubspot", body, v.hubspot_headers(url, body)


def hubspot_header(h: Harness, field: str, value: str) -> Request:
    path, body, headers = hubspot(h, "firstname", "Fuzz")
    return path, body, {**headers, field: value}


def salesforce(_: Harness, field: str, value: str) -> Request:
    nid = ("04l" + uid() + "AAA")[:18]
    body = v.salesforce_message([(nid, "00Q5g000001FakeAAA", "+12125550185")]).decode()
    originals = {"Id": f"<Id>{nid}</Id>", "Phone": "<sf:Phone>+12125550185</sf:Phone>"}
    originals["LastModifiedDate"] = "<sf:LastModifiedDate>2024-03-01T10:00:00.000Z</sf:LastModifiedDate>"
    originals["Email"] = "<sf:Email>grace@example.com</sf:Email>"
    old = originals[field]
    tag = old[1 : old.index(">")]
    body = body.replace(old, f"<{tag}>{escape(value)}</{tag}>")
    return f"/v1/webhooks/{T}/salesforce", body.encode("utf-8"), dict(v.SF_HEADERS)


def zapier(_: Harness, field: str, value: str) -> Request:
    doc = {"Lead Phone": "212 555 0186", "Lead Name": "Zed Fuzz", "Zap Run": uid(), "email": f"{uid()}@e.com"}
    doc[field] = value
    return (
        f"/v1/webhooks/{T}/zapier",
        json.dumps(doc).encode(),
        {
            "Content-Type": "application/json",
            "X-Leadflow-Secret": v.ZAPIER_SECRET,
        },
    )


def marketo(_: Harness, field: str, value: str) -> Request:
    doc = {"leadId": uid(), "phoneNumber": "212 555 0187", "firstName": "Mo", "email": f"{uid()}@e.com"}
    doc[field] = value
    return (
        f"/v1/webhooks/{T}/marketo",
        urlencode(doc).encode(),
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Marketo-Token": v.MARKETO_SECRET,
        },
    )


def calls(h: Harness, field: str, value: str) -> Request:
    params = [(k, value if k == field else val) for k, val in v.twilio_status("CA" + uid() + uid())]
    url = f"{h.url}/v1/calls/{T}/status"
    body, headers = v.twilio_request(url, params)
    return f"/v1/calls/{T}/status", body, headers


Builder = Callable[[Harness, str, str], Request]
FIELDS: list[tuple[str, Builder, str]] = [
    *[
        ("api", api, f)
        for f in (
            "phone",
            "email",
            "first_name",
            "vendor_lead_id",
            "campaign",
            "message",
            "consent.consented_at",
            "custom_fields",
        )
    ],
    *[("form", form, f) for f in ("phone", "email", "consent", "consented_at", "campaign", "first_name")],
    *[
        ("google", google, f)
        for f in ("lead_id", "phone", "email", "postal_code", "campaign_id", "form_id", "column_id", "gcl_id")
    ],
    *[
        ("meta", meta, f)
        for f in (
            "leadgen_id",
            "form_id",
            "page_id",
            "ad_id",
            "created_time",
            "graph.phone_number",
            "graph.email",
            "graph.full_name",
        )
    ],
    *[("hubspot", hubspot, f) for f in ("phone", "email", "objectId", "firstname", "lastmodifieddate")],
    *[("salesforce", salesforce, f) for f in ("Id", "Phone", "LastModifiedDate", "Email")],
    *[("zapier", zapier, f) for f in ("Lead Phone", "Lead Name", "Zap Run", "email")],
    *[("marketo", marketo, f) for f in ("leadId", "phoneNumber", "firstName")],
    *[("calls", calls, f) for f in ("CallSid", "CallStatus", "CallDuration", "To")],
]
HEADERS: list[tuple[str, Builder, str]] = [
    ("api", api_header, "Idempotency-Key"),
    ("meta", meta_header, "X-Hub-Signature-256"),
    ("hubspot", hubspot_header, "X-HubSpot-Request-Timestamp"),
    ("hubspot", hubspot_header, "X-HubSpot-Signature-v3"),
]


@pytest.fixture(scope="module")
def fuzz(harness: Harness) -> Harness:
    harness.apply(T, all_sources_spec(), SECRETS)
    return harness


def check(h: Harness, client: httpx.Client, request: Request) -> None:
    path, body, headers = request
    before = h.rows(T)
    sent = {k.encode(): val.encode("latin-1") for k, val in headers.items()}
    resp = client.post(path, content=body, headers=sent)
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert h.rows(T) == before, resp.text
        assert "error" in resp.json()


@pytest.mark.parametrize(("source", "build", "field"), FIELDS, ids=[f"{s}:{f}" for s, _, f in FIELDS])
def test_unicode_in_every_field_never_5xx_nothing_stored_on_refusal(
    fuzz: Harness, source: str, build: Builder, field: str
) -> None:
    with httpx.Client(base_url=fuzz.url, timeout=30) as client:

        @FUZZ
        @given(value=TEXT)
        def run(value: str) -> None:
            check(fuzz, client, build(fuzz, field, value))

        run()


@pytest.mark.parametrize(("source", "build", "field"), HEADERS, ids=[f"{s}:{f}" for s, _, f in HEADERS])
def test_unicode_in_headers_never_5xx_nothing_stored_on_refusal(
    fuzz: Harness, source: str, build: Builder, field: str
) -> None:
    with httpx.Client(base_url=fuzz.url, timeout=30) as client:

        @FUZZ
        @given(value=HEADER_TEXT)
        def run(value: str) -> None:
            check(fuzz, client, build(fuzz, field, value))

        run()


def test_no_message_queued_for_refused_tenant_requests(fuzz: Harness) -> None:
    """A superscript in each source's phone-like field: never a 5xx, and whatever was refused
    queued nothing (the messages queued match the jobs stored)."""
    with httpx.Client(base_url=fuzz.url, timeout=30) as client:
        for _, build, field in FIELDS:
            check(fuzz, client, build(fuzz, field, "+1212555018²"))
    assert fuzz.queued_messages(T) <= fuzz.rows(T)["dispatcher_jobs"]

"""Issue 11 at the gateway: Google's 200, Meta answered from the store, one lead per person and
campaign across sources, ASCII-only digits and control-free ids, and the webhook body schemas."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode

import httpx
import pytest
from jsonschema import Draft202012Validator

from leadflow.v1 import dispatcher_pb2, lead_pb2
from services.gateway.tests import gateway_vendors as v
from services.gateway.tests.harness import Harness

JSON = {"Content-Type": "application/json"}


def uid() -> str:
    return uuid.uuid4().hex[:12]


def api_headers(h: Harness, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {h.api_keys['acme']}", **extra}


def latin1(headers: dict[str, str]) -> dict[bytes, bytes]:
    """Header values as the bytes a sender puts on the wire ("\u00b2" is one latin-1 byte)."""
    return {k.encode(): val.encode("latin-1") for k, val in headers.items()}


def get_lead(h: Harness, lead_id: str) -> dispatcher_pb2.GetLeadResponse:
    reply: dispatcher_pb2.GetLeadResponse = h.dispatch().GetLead(
        dispatcher_pb2.GetLeadRequest(tenant="acme", lead_id=lead_id)
    )
    return reply


def dial_jobs(h: Harness, lead_id: str) -> int:
    from sqlalchemy import text

    with h.db.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT COUNT(*) FROM dispatcher_jobs"
                    " WHERE tenant = 'acme' AND lead_id = :l AND kind = 'dial'"
                ),
                {"l": lead_id},
            ).scalar_one()
        )


def test_meta_redelivery_is_answered_from_the_store_without_a_graph_call(harness: Harness) -> None:
    leadgen_id = str(int(time.time() * 1000) + 11)
    harness.graph.add_lead(
        leadgen_id,
        {"full_name": ["Mia Store"], "phone_number": ["+12125550161"], "email": [f"{uid()}@example.com"]},
        "2024-03-01T10:00:00+0000",
    )
    body = v.meta_notification([(leadgen_id, "7001")])
    url = f"{harness.url}/v1/webhooks/acme/meta"
    first = httpx.post(url, content=body, headers=v.meta_headers(body))
    assert first.status_code == 200, first.text
    fetched = [p for p in harness.graph.requests if p.endswith(leadgen_id)]
    assert len(fetched) == 1
    again = httpx.post(url, content=body, headers=v.meta_headers(body))
    assert again.status_code == 200, again.text
    assert [x["lead_id"] for x in again.json()["leads"]] == [x["lead_id"] for x in first.json()["leads"]]
    assert again.json()["leads"][0]["duplicate"] is True
    # Zero Graph requests for the retry: the fake counted every request that reached it.
    assert [p for p in harness.graph.requests if p.endswith(leadgen_id)] == fetched
    lead = get_lead(harness, first.json()["leads"][0]["lead_id"]).lead
    assert lead.campaign == "7001"


def test_two_sources_one_person_one_campaign_is_one_lead(harness: Harness) -> None:
    """API then web form, same person (email), same campaign: one lead, the form's newer fields,
    the API's earlier consent evidence, one dial job; the form is answered 200 merged."""
    email, campaign = f"{uid()}@example.com", f"spring-{uid()}"
    first = httpx.post(
        f"{harness.url}/v1/leads",
        json={
            "phone": "+12125550171",
            "first_name": "Ann",
            "email": email.upper(),
            "campaign": campaign,
            "message": "quote for a new furnace",
            "consent": {
                "granted": True,
                "disclosure_text": "You agree ACME may call you.",
                "consented_at": "2026-11-30T10:00:00Z",
                "trustedform_cert_url": "https://cert.trustedform.com/" + "a" * 40,
            },
        },
        headers=api_headers(harness, **{"Idempotency-Key": uid()}),
    )
    assert first.status_code == 202, first.text
    lead_id = first.json()["lead_id"]
    form_body = urlencode(
        {
            "form_key": v.FORM_KEY,
            "phone": "(212) 555-0171",
            "first_name": "Annie",
            "email": f"  {email} ",
            "campaign": campaign,
            "message": "furnace quote, evenings please",
            "consent": "true",
            "consented_at": "2026-11-30T11:00:00Z",
        }
    ).encode()
    form_headers = {"Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": uid()}
    second = httpx.post(f"{harness.url}/v1/webhooks/acme/form", content=form_body, headers=form_headers)
    assert second.status_code == 200, second.text
    answer = second.json()
    assert (answer["lead_id"], answer["duplicate"], answer["merged"]) == (lead_id, True, True)
    stored = get_lead(harness, lead_id).lead
    assert stored.source == lead_pb2.SOURCE_API
    assert (stored.contact.first_name, stored.message) == ("Annie", "furnace quote, evenings please")
    assert stored.consent.trustedform_cert_url.startswith("https://cert.trustedform.com/")
    assert stored.consent.consented_at.ToJsonString() == "2026-11-30T10:00:00Z"
    assert dial_jobs(harness, lead_id) <= 1
    # The form's redelivery (same Idempotency-Key) is the same merged lead, still one lead.
    before = harness.rows("acme")["dispatcher_leads"]
    replay = httpx.post(f"{harness.url}/v1/webhooks/acme/form", content=form_body, headers=form_headers)
    assert (replay.status_code, replay.json()["lead_id"]) == (200, lead_id)
    assert harness.rows("acme")["dispatcher_leads"] == before
    # Another campaign is another lead.
    other = httpx.post(
        f"{harness.url}/v1/leads",
        json={"phone": "+12125550171", "email": email, "campaign": f"fall-{uid()}"},
        headers=api_headers(harness),
    )
    assert other.status_code == 202
    assert other.json()["lead_id"] != lead_id


SUPERSCRIPT_TWO = "\u00b2"
ARABIC_THREE = "\u0663"


@pytest.mark.parametrize(
    ("phone", "field"),
    [
        (f"+1212555017{SUPERSCRIPT_TWO}", "phone"),
        (f"+1212555017{ARABIC_THREE}", "phone"),
        ("+1\uff12\uff11\uff125550170", "phone"),
    ],
)
def test_non_ascii_digits_in_a_phone_are_a_400_naming_it(harness: Harness, phone: str, field: str) -> None:
    before = harness.rows("acme")
    resp = httpx.post(f"{harness.url}/v1/leads", json={"phone": phone}, headers=api_headers(harness))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["field"] == field
    assert harness.rows("acme") == before


def test_non_ascii_digits_in_timestamps_and_durations_are_a_400_naming_them(harness: Harness) -> None:
    before = harness.rows("acme")
    url = f"{harness.url}/v1/webhooks/acme/hubspot"
    body = v.hubspot_workflow_body(int(time.time()), "+12125550172")
    headers = v.hubspot_headers(url, body)
    headers["X-HubSpot-Request-Timestamp"] = headers["X-HubSpot-Request-Timestamp"][:-1] + SUPERSCRIPT_TWO
    resp = httpx.post(url, content=body, headers=latin1(headers))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["field"] == "X-HubSpot-Request-Timestamp"

    key = harness.apply(
        "sig-ascii",
        {"sources": {"api": {"secretRef": {"name": "api"}}}},
        {"api": {"webhook_secret": v.WEBHOOK_SECRET}},
    )
    lead = json.dumps({"phone": "+12125550173"}).encode()
    signed = v.standard_webhook_headers(v.WEBHOOK_SECRET, "msg-" + uid(), lead)
    signed["webhook-timestamp"] = signed["webhook-timestamp"][:-1] + SUPERSCRIPT_TWO
    api = httpx.post(
        f"{harness.url}/v1/leads",
        content=lead,
        headers=latin1({"Authorization": f"Bearer {key}", "Content-Type": "application/json", **signed}),
    )
    assert api.status_code == 400, api.text
    assert api.json()["error"]["field"] == "webhook-timestamp"
    assert harness.rows("sig-ascii")["dispatcher_leads"] == 0

    calls_url = f"{harness.url}/v1/calls/acme/status"
    params = [
        (k, f"4{SUPERSCRIPT_TWO}" if k == "CallDuration" else val) for k, val in v.twilio_status("CA" + uid())
    ]
    call_body, call_headers = v.twilio_request(calls_url, params)
    call = httpx.post(calls_url, content=call_body, headers=call_headers)
    assert call.status_code == 400, call.text
    assert call.json()["error"]["field"] == "CallDuration"
    after = harness.rows("acme")
    assert after["dispatcher_call_statuses"] == before["dispatcher_call_statuses"]


def test_control_characters_in_ids_are_a_400_naming_the_field(harness: Harness) -> None:
    before = harness.rows("acme")
    api = httpx.post(
        f"{harness.url}/v1/leads",
        json={"phone": "+12125550174", "vendor_lead_id": "v\u0000" + uid()},
        headers=api_headers(harness),
    )
    assert (api.status_code, api.json()["error"]["field"]) == (400, "vendor_lead_id")
    surrogate = httpx.post(
        f"{harness.url}/v1/leads",
        content=b'{"phone": "+12125550174", "first_name": "\\ud800"}',
        headers={**api_headers(harness), **JSON},
    )
    assert (surrogate.status_code, surrogate.json()["error"]["field"]) == (400, "body")
    google = httpx.post(
        f"{harness.url}/v1/webhooks/acme/google",
        content=v.google_body("L\u0000" + uid(), "+12125550175"),
        headers=JSON,
    )
    assert (google.status_code, google.json()["error"]["field"]) == (400, "lead_id")
    doc = json.loads(v.google_body("L" + uid(), "+12125550175"))
    doc["form_id"] = "12\u000134"
    form_id = httpx.post(f"{harness.url}/v1/webhooks/acme/google", json=doc)
    assert (form_id.status_code, form_id.json()["error"]["field"]) == (400, "form_id")
    zap = httpx.post(
        f"{harness.url}/v1/webhooks/acme/zapier",
        json={"Lead Phone": "212 555 0176", "Zap Run": "run\u001b" + uid()},
        headers={"X-Leadflow-Secret": v.ZAPIER_SECRET},
    )
    assert (zap.status_code, zap.json()["error"]["field"]) == (400, "Zap Run")
    tenant = httpx.post(
        f"{harness.url}/v1/webhooks/{quote('acme' + chr(0))}/google", content=b"{}", headers=JSON
    )
    assert (tenant.status_code, tenant.json()["error"]["field"]) == (400, "tenant")
    assert harness.rows("acme") == before


def test_every_webhook_route_documents_its_request_body(harness: Harness) -> None:
    doc = httpx.get(f"{harness.url}/openapi.json").json()
    expected = {
        "/v1/webhooks/{tenant}/meta": {"application/json"},
        "/v1/webhooks/{tenant}/hubspot": {"application/json"},
        "/v1/webhooks/{tenant}/salesforce": {"text/xml", "application/soap+xml"},
        "/v1/webhooks/{tenant}/zapier": {"application/json", "application/x-www-form-urlencoded"},
        "/v1/webhooks/{tenant}/marketo": {"application/json", "application/x-www-form-urlencoded"},
        "/v1/webhooks/{tenant}/google": {"application/json"},
        "/v1/webhooks/{tenant}/form": {"application/json", "application/x-www-form-urlencoded"},
        "/v1/calls/{tenant}/status": {"application/x-www-form-urlencoded"},
        "/v1/leads": {"application/json"},
    }
    schemas = doc["components"]["schemas"]
    posts = {path for path, ops in doc["paths"].items() if "post" in ops}
    assert set(expected) <= posts
    for path in posts:
        content = doc["paths"][path]["post"]["requestBody"]["content"]
        assert content, path
        if path in expected:
            assert set(content) == expected[path], path
        for item in content.values():
            schema = item["schema"]
            refs = [schema.get("$ref", "")] + [s.get("$ref", "") for s in schema.get("oneOf", [])]
            for ref in filter(None, refs):
                assert ref.rsplit("/", 1)[-1] in schemas, (path, ref)
            assert "example" in item, path
            if "xml" not in schema:
                # The example is valid against the schema it documents (refs into components).
                Draft202012Validator({"components": doc["components"], **schema}).validate(item["example"])
    assert schemas["GoogleLeadForm"]["required"] == ["lead_id", "user_column_data", "google_key"]
    assert "leadgen_id" in schemas["MetaLeadgenValue"]["properties"]
    sf = doc["paths"]["/v1/webhooks/{tenant}/salesforce"]["post"]["requestBody"]["content"]["text/xml"]
    assert sf["schema"]["xml"]["name"] == "Envelope"
    assert "<OrganizationId>" in sf["example"]
    google_ok = doc["paths"]["/v1/webhooks/{tenant}/google"]["post"]["responses"]["200"]
    assert "content" not in google_ok or not google_ok["content"]


def test_concurrent_http_submissions_of_one_person_and_campaign_are_one_lead(harness: Harness) -> None:
    email, campaign = f"{uid()}@example.com", f"rush-{uid()}"

    def post(i: int) -> httpx.Response:
        return httpx.post(
            f"{harness.url}/v1/leads",
            json={"phone": "+12125550177", "email": email, "campaign": campaign, "first_name": f"R{i}"},
            headers=api_headers(harness, **{"Idempotency-Key": uid()}),
            timeout=30,
        )

    before = harness.rows("acme")["dispatcher_leads"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(post, range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [202]
    assert len({a.json()["lead_id"] for a in answers}) == 1
    assert [a.json()["merged"] for a in answers if a.status_code == 200] == [True] * 7
    assert harness.rows("acme")["dispatcher_leads"] == before + 1
    assert dial_jobs(harness, answers[0].json()["lead_id"]) <= 1


def test_a_tenant_with_merge_window_zero_keeps_every_submission(harness: Harness) -> None:
    key = harness.apply("no-merge", {"policy": {"mergeWindowSeconds": 0}, "sources": {"api": {}}}, {})
    email, campaign = f"{uid()}@example.com", "same"
    ids = []
    for name in ("One", "Two"):
        resp = httpx.post(
            f"{harness.url}/v1/leads",
            json={"phone": "+12125550178", "email": email, "campaign": campaign, "first_name": name},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert resp.status_code == 202, resp.text
        assert resp.json()["merged"] is False
        ids.append(resp.json()["lead_id"])
    assert len(set(ids)) == 2
    assert harness.rows("no-merge")["dispatcher_leads"] == 2

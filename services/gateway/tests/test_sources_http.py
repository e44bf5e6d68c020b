"""Every source end to end through the real gateway, compliance and dispatcher processes."""

from __future__ import annotations

import json
import re
import time
import uuid
from urllib.parse import urlencode

import httpx

from leadflow.v1 import dispatcher_pb2, lead_pb2
from leadflow_gateway.sources.salesforce import ACK
from services.gateway.tests.gateway_vendors import (
    FORM_KEY,
    MARKETO_SECRET,
    META_VERIFY_TOKEN,
    SF_HEADERS,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_NEW,
    ZAPIER_SECRET,
    google_body,
    hubspot_headers,
    hubspot_workflow_body,
    meta_headers,
    meta_notification,
    salesforce_message,
    standard_webhook_headers,
    twilio_request,
    twilio_status,
)
from services.gateway.tests.harness import Harness


def uid() -> str:
    return uuid.uuid4().hex[:12]


def get_lead(h: Harness, tenant: str, lead_id: str) -> dispatcher_pb2.GetLeadResponse:
    reply: dispatcher_pb2.GetLeadResponse = h.dispatch().GetLead(
        dispatcher_pb2.GetLeadRequest(tenant=tenant, lead_id=lead_id)
    )
    return reply


def test_direct_api_202_then_200_for_the_same_idempotency_key(harness: Harness) -> None:
    key = harness.api_keys["acme"]
    body = {
        "full_name": "Ada Lovelace",
        "phone": "(212) 555-0143",
        "message": "No heat at all",
        "email": "Ada@Example.com",
    }
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uid(), "X-Request-Id": "req-api-1"}
    first = httpx.post(f"{harness.url}/v1/leads", json=body, headers=headers)
    assert first.status_code == 202, first.text
    assert first.headers["x-request-id"] == "req-api-1"
    answer = first.json()
    assert answer["duplicate"] is False
    assert answer["dial"]["state"] in ("scheduled", "deferred", "blocked")
    again = httpx.post(f"{harness.url}/v1/leads", json=body, headers=headers)
    assert again.status_code == 200
    assert again.json()["lead_id"] == answer["lead_id"]
    assert again.json()["duplicate"]
    stored = get_lead(harness, "acme", answer["lead_id"]).lead
    assert stored.source == lead_pb2.SOURCE_API
    assert stored.contact.phone.e164 == "+12125550143"
    assert stored.contact.email == "ada@example.com"
    assert (stored.contact.first_name, stored.contact.last_name) == ("Ada", "Lovelace")
    assert stored.urgency == lead_pb2.URGENCY_EMERGENCY


def test_standard_webhooks_signatures_with_key_rotation(harness: Harness) -> None:
    spec = {"sources": {"api": {"secretRef": {"name": "api"}}}}
    key = harness.apply(
        "signed", spec, {"api": {"webhook_secret": WEBHOOK_SECRET, "webhook_secret_next": WEBHOOK_SECRET_NEW}}
    )
    body = json.dumps({"phone": "+12125550111", "first_name": "Sig"}).encode()
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    unsigned = httpx.post(f"{harness.url}/v1/leads", content=body, headers=auth)
    assert unsigned.status_code == 401
    msg_id = f"msg_{uid()}"
    for secret in (WEBHOOK_SECRET, WEBHOOK_SECRET_NEW):
        signed = httpx.post(
            f"{harness.url}/v1/leads",
            content=body,
            headers={**auth, **standard_webhook_headers(secret, msg_id, body)},
        )
        assert signed.status_code in (200, 202), signed.text
    # The webhook-id is the idempotency key: the second delivery is the same lead.
    assert signed.status_code == 200
    stale = standard_webhook_headers(WEBHOOK_SECRET, f"msg_{uid()}", body, ts=int(time.time()) - 301)
    assert httpx.post(f"{harness.url}/v1/leads", content=body, headers={**auth, **stale}).status_code == 401


def test_meta_handshake_and_leads_fetched_from_graph(harness: Harness) -> None:
    url = f"{harness.url}/v1/webhooks/acme/meta"
    ok = httpx.get(
        url,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": META_VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
    )
    assert ok.status_code == 200
    assert ok.text == "1158201444"
    bad = httpx.get(url, params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"})
    assert bad.status_code == 401

    a, b = str(int(time.time() * 1000)), str(int(time.time() * 1000) + 1)
    harness.graph.add_lead(
        a,
        {"full_name": ["Renée Dupont"], "phone_number": ["+12125550101"], "email": ["renee@example.com"]},
        "2024-03-01T10:00:00+0000",
    )
    harness.graph.add_lead(
        b,
        {
            "first_name": ["Bob"],
            "last_name": ["Smith"],
            "phone_number": ["212-555-0102"],
            "describe_the_problem": ["basement flooding"],
        },
        "2024-03-01T10:01:00+0000",
    )
    body = meta_notification([(a, "9001"), (b, "9001")])
    resp = httpx.post(url, content=body, headers=meta_headers(body))
    assert resp.status_code == 200, resp.text
    leads = resp.json()["leads"]
    assert len(leads) == 2
    assert not any(x["duplicate"] for x in leads)
    first = get_lead(harness, "acme", leads[0]["lead_id"]).lead
    second = get_lead(harness, "acme", leads[1]["lead_id"]).lead
    assert (first.vendor_lead_id, first.contact.first_name, first.contact.email) == (
        a,
        "Renée",
        "renee@example.com",
    )
    assert second.urgency == lead_pb2.URGENCY_EMERGENCY
    assert second.custom_fields["describe_the_problem"] == "basement flooding"
    assert second.custom_fields["meta.form_id"] == "9001"

    # A replayed delivery: the same lead ids, and no second job.
    jobs_before = harness.jobs("acme", leads[0]["lead_id"])
    replay = httpx.post(url, content=body, headers=meta_headers(body))
    assert replay.status_code == 200
    assert [x["lead_id"] for x in replay.json()["leads"]] == [x["lead_id"] for x in leads]
    assert all(x["duplicate"] for x in replay.json()["leads"])
    assert harness.jobs("acme", leads[0]["lead_id"]) == jobs_before


def test_meta_graph_down_is_503_and_nothing_stored(harness: Harness) -> None:
    lead_id = str(int(time.time() * 1000) + 7)
    harness.graph.add_lead(lead_id, {"phone_number": ["+12125550109"]}, "2024-03-01T10:00:00+0000")
    harness.graph.fail_next = 10
    body = meta_notification([(lead_id, "1")])
    try:
        resp = httpx.post(f"{harness.url}/v1/webhooks/refused/meta", content=body, headers=meta_headers(body))
    finally:
        harness.graph.fail_next = 0
    assert resp.status_code == 503
    assert int(resp.headers["retry-after"]) >= 1
    harness.assert_nothing_left("refused")


def test_hubspot_v3(harness: Harness) -> None:
    url = f"{harness.url}/v1/webhooks/acme/hubspot"
    body = hubspot_workflow_body(int(time.time()), "+12125550120", "water heater leaking")
    resp = httpx.post(url, content=body, headers=hubspot_headers(url, body))
    assert resp.status_code == 202, resp.text
    lead = get_lead(harness, "acme", resp.json()["lead_id"]).lead
    assert lead.source == lead_pb2.SOURCE_HUBSPOT
    assert lead.contact.email == "ada.lovelace@example.com"
    assert lead.urgency == lead_pb2.URGENCY_HIGH
    replay = httpx.post(url, content=body, headers=hubspot_headers(url, body))
    assert replay.status_code == 200
    assert replay.json()["lead_id"] == resp.json()["lead_id"]


def test_salesforce_ack_after_every_lead_is_stored(harness: Harness) -> None:
    n = uid()[:8]
    body = salesforce_message(
        [
            (f"04l5g{n}01AAA", "00Q5g000001AAA", "212-555-0130"),
            (f"04l5g{n}02AAA", "00Q5g000002AAA", "212-555-0131"),
        ]
    )
    before = harness.rows("acme")["dispatcher_leads"]
    resp = httpx.post(f"{harness.url}/v1/webhooks/acme/salesforce", content=body, headers=SF_HEADERS)
    assert resp.status_code == 200
    assert resp.text == ACK
    assert resp.headers["content-type"].startswith("text/xml")
    assert harness.rows("acme")["dispatcher_leads"] == before + 2
    again = httpx.post(f"{harness.url}/v1/webhooks/acme/salesforce", content=body, headers=SF_HEADERS)
    assert again.text == ACK
    assert harness.rows("acme")["dispatcher_leads"] == before + 2


def find_lead(h: Harness, tenant: str, source: lead_pb2.Source.ValueType, vendor_id: str) -> str:
    """The stored lead id for a sender's id (answers such as Google's carry none)."""
    reply = h.dispatch().FindLeads(
        dispatcher_pb2.FindLeadsRequest(tenant=tenant, source=source, vendor_lead_ids=[vendor_id])
    )
    assert [f.vendor_lead_id for f in reply.found] == [vendor_id]
    return str(reply.found[0].lead.lead_id)


def test_google_test_leads_are_stored_but_never_dialed(harness: Harness) -> None:
    url = f"{harness.url}/v1/webhooks/acme/google"
    test_id = f"TeSter-{uid()}"
    resp = httpx.post(
        url,
        content=google_body(test_id, "+12125550140", is_test=True, email=f"{uid()}@example.com"),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    stored = get_lead(harness, "acme", find_lead(harness, "acme", lead_pb2.SOURCE_GOOGLE, test_id))
    assert stored.lead.is_test
    assert stored.dial_state == dispatcher_pb2.DIAL_STATE_BLOCKED
    assert stored.lead.urgency == lead_pb2.URGENCY_EMERGENCY  # "gas smell" in a custom question
    assert stored.lead.campaign == "7654321"
    real_id = f"Lead-{uid()}"
    real = httpx.post(
        url,
        content=google_body(real_id, "+12125550141", email=f"{uid()}@example.com"),
        headers={"Content-Type": "application/json"},
    )
    assert real.status_code == 200
    assert not get_lead(
        harness, "acme", find_lead(harness, "acme", lead_pb2.SOURCE_GOOGLE, real_id)
    ).lead.is_test


def test_google_is_answered_200_with_an_empty_body_new_or_redelivered(harness: Harness) -> None:
    """Google's lead form webhook contract: HTTP 200, empty body; a redelivery stores nothing new."""
    url = f"{harness.url}/v1/webhooks/acme/google"
    lead_id = f"Lead-{uid()}"
    body = google_body(lead_id, "+12125550142", email=f"{uid()}@example.com")
    before = harness.rows("acme")["dispatcher_leads"]
    for _ in range(2):
        resp = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        assert (resp.status_code, resp.content) == (200, b"")
    assert harness.rows("acme")["dispatcher_leads"] == before + 1
    stored = find_lead(harness, "acme", lead_pb2.SOURCE_GOOGLE, lead_id)
    assert harness.jobs("acme", stored) >= 2  # enrich and crm_sync, once


def test_zapier_and_marketo_with_field_maps(harness: Harness) -> None:
    run = uid()
    zap = httpx.post(
        f"{harness.url}/v1/webhooks/acme/zapier",
        json={"Lead Phone": "212 555 0150", "Lead Name": "Zed Zapper", "Zap Run": run, "Budget": "5000"},
        headers={"X-Leadflow-Secret": ZAPIER_SECRET},
    )
    assert zap.status_code == 202, zap.text
    lead = get_lead(harness, "acme", zap.json()["lead_id"]).lead
    assert (lead.vendor_lead_id, lead.contact.last_name, lead.custom_fields["Budget"]) == (
        run,
        "Zapper",
        "5000",
    )
    mkto = httpx.post(
        f"{harness.url}/v1/webhooks/acme/marketo",
        json={"leadId": f"mkto-{run}", "phoneNumber": "2125550151", "firstName": "Marty"},
        headers={"X-Marketo-Token": MARKETO_SECRET},
    )
    assert mkto.status_code == 202
    assert mkto.content
    assert get_lead(harness, "acme", mkto.json()["lead_id"]).lead.source == lead_pb2.SOURCE_MARKETO


def test_web_form_urlencoded_with_consent_and_cors(harness: Harness) -> None:
    url = f"{harness.url}/v1/webhooks/acme/form"
    pre = httpx.options(
        url, headers={"Origin": "https://acme.example", "Access-Control-Request-Method": "POST"}
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://acme.example"
    assert httpx.options(url, headers={"Origin": "https://evil.example"}).status_code == 403
    form = {
        "form_key": FORM_KEY,
        "first_name": "Fern",
        "last_name": "Former",
        "phone": "212-555-0160",
        "consent": "on",
        "xxTrustedFormCertUrl": "https://cert.trustedform.com/abc123",
        "leadid_token": "12345678-1234-1234-1234-123456789012",
        "_honeypot": "",
    }
    resp = httpx.post(
        url,
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://acme.example",
            "Referer": "https://acme.example/quote",
        },
    )
    assert resp.status_code == 202, resp.text
    assert resp.headers["access-control-allow-origin"] == "https://acme.example"
    c = get_lead(harness, "acme", resp.json()["lead_id"]).lead.consent
    assert c.granted
    assert c.disclosure_text.startswith("By submitting")
    assert (c.page_url, c.ip) == ("https://acme.example/quote", "127.0.0.1")
    assert c.trustedform_cert_url == "https://cert.trustedform.com/abc123"
    assert c.jornaya_leadid.startswith("12345678")
    as_json = httpx.post(url, json={**form, "phone": "212-555-0161"}, headers={"X-Form-Key": FORM_KEY})
    assert as_json.status_code == 202


def test_twilio_status_callback_reaches_the_dispatcher(harness: Harness) -> None:
    url = f"{harness.url}/v1/calls/acme/status"
    body, headers = twilio_request(url, twilio_status(f"CA{uid()}", "completed"))
    resp = httpx.post(url, content=body, headers=headers)
    # An unknown CallSid is recorded or ignored by the dispatcher, never an error of the gateway.
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"applied", "lead_id"}


def test_probes_and_metrics(harness: Harness) -> None:
    assert httpx.get(f"{harness.url}/healthz").status_code == 200
    ready = httpx.get(f"{harness.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["dependencies"] == {
        "compliance": True,
        "dispatcher": True,
    }
    # /metrics is not on the public port, only on the metrics port.
    assert httpx.get(f"{harness.url}/metrics").status_code == 404
    metrics_port = (harness.workdir / "gateway.metrics.port").read_text()
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    assert 'leadflow_gateway_requests_total{source="probe",status="200"}' in metrics
    assert "leadflow_gateway_request_seconds_bucket" in metrics
    labels = " ".join(re.findall(r"\{[^}]*\}", metrics))
    # Labels carry sources and status codes only: no tenant, no phone number, no email.
    assert "acme" not in labels
    assert not re.search(r"\d{7}|@", labels)


def test_openapi_describes_the_direct_api(harness: Harness) -> None:
    doc = httpx.get(f"{harness.url}/openapi.json").json()
    post = doc["paths"]["/v1/leads"]["post"]
    assert (
        post["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ApiLead"
    )
    assert "phone" in doc["components"]["schemas"]["ApiLead"]["required"]
    assert {"202", "400", "401", "429", "503"} <= set(post["responses"])


def test_vendor_lead_without_a_dialable_number_is_kept_never_dialed(harness: Harness) -> None:
    url = f"{harness.url}/v1/webhooks/acme/hubspot"
    props = {"email": {"value": "x@example.com"}}
    body = json.dumps({"objectId": f"nophone-{uid()}", "properties": props}).encode()
    resp = httpx.post(url, content=body, headers=hubspot_headers(url, body))
    assert resp.status_code == 202, resp.text
    assert resp.json()["dial"]["state"] == "blocked"
    stored = get_lead(harness, "acme", resp.json()["lead_id"])
    assert stored.lead.contact.email == "x@example.com"
    assert stored.dial_state == dispatcher_pb2.DIAL_STATE_BLOCKED


def test_timeline_only_for_the_keys_own_tenant(harness: Harness) -> None:
    own = {"Authorization": f"Bearer {harness.api_keys['acme']}"}
    resp = httpx.post(f"{harness.url}/v1/leads", json={"phone": "2125550170"}, headers=own)
    assert resp.status_code == 202
    url = f"{harness.url}/v1/leads/{resp.json()['lead_id']}/timeline"
    mine = httpx.get(url, headers=own)
    assert mine.status_code == 200
    assert "received" in [e["kind"] for e in mine.json()["events"]]
    other = httpx.get(url, headers={"Authorization": f"Bearer {harness.api_keys['refused']}"})
    assert other.status_code == 404
    assert httpx.get(url).status_code == 401

"""Revocation through the gateway's reply routes and the call status path, against real compliance,
dispatcher and gateway processes: each opt-out stops the next call; bad signatures change nothing."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from leadflow.v1 import compliance_pb2, decision_pb2, lead_pb2
from leadflow_core.timestamps import to_proto
from services.gateway.tests.gateway_vendors import (
    TWILIO_AUTH_TOKEN,
    WEBHOOK_SECRET,
    standard_webhook_headers,
    twilio_request,
)
from services.gateway.tests.harness import Harness

# A weekday afternoon in New York: only consent decides.
OPEN = datetime(2026, 11, 18, 15, 0, tzinfo=ZoneInfo("America/New_York"))


def number() -> str:
    return f"+1212555{uuid.uuid4().int % 10000:04d}"


def decide(h: Harness, phone: str, email: str = "") -> decision_pb2.Decision:
    lead = lead_pb2.Lead(
        lead_id=uuid.uuid4().hex,
        tenant="acme",
        source=lead_pb2.SOURCE_API,
        contact=lead_pb2.Contact(email=email, phone=lead_pb2.Phone(e164=phone)),
        consent=lead_pb2.ConsentEvidence(
            granted=True,
            disclosure_text="I agree ACME may call me using an autodialer",
            consented_at=to_proto(OPEN - timedelta(hours=1)),
            seller="acme",
            trustedform_cert_url="https://cert.trustedform.com/abc",
        ),
    )
    reply = h.compliance_stub().Evaluate(
        compliance_pb2.EvaluateRequest(
            lead=lead, evaluate_at=to_proto(OPEN), purpose=compliance_pb2.EVALUATION_PURPOSE_WHAT_IF
        )
    )
    return reply.decision


def revocations(h: Harness) -> list[dict[str, object]]:
    records = h.compliance_stub().ExportAuditLog(compliance_pb2.ExportAuditLogRequest(tenant="acme"))
    return [json.loads(r.detail_json) for r in records if r.action == "consent.revoke"]


def sms(h: Harness, phone: str, said: str, sid: str = "", query: str = "") -> httpx.Response:
    url = f"{h.url}/v1/replies/acme/sms{query}"
    params = [
        ("AccountSid", "AC" + "0" * 32),
        ("Body", said),
        ("From", phone),
        ("MessageSid", sid or "SM" + uuid.uuid4().hex),
        ("To", "+12125550000"),
    ]
    body, headers = twilio_request(url, params)
    return httpx.post(url, content=body, headers=headers)


def test_a_stop_text_revokes_and_the_one_confirmation_is_sent_once(harness: Harness) -> None:
    phone = number()
    assert decide(harness, phone).action == decision_pb2.DIAL_ACTION_DIAL_NOW
    sid = "SM" + uuid.uuid4().hex
    resp = sms(harness, phone, "STOP", sid)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/xml")
    assert "<Message>You are unsubscribed" in resp.text
    d = decide(harness, phone)
    assert d.action == decision_pb2.DIAL_ACTION_NEVER
    assert "consent.revoked" in {r.rule_id for r in d.reasons}
    # Twilio redelivers: the same revocation, and no second confirmation text.
    again = sms(harness, phone, "STOP", sid)
    assert again.status_code == 200
    assert "<Message>" not in again.text
    assert sum(1 for r in revocations(harness) if r["message_id"] == sid) == 1


def test_stop_calling_me_after_5pm_revokes(harness: Harness) -> None:
    phone = number()
    resp = sms(harness, phone, "Stop calling me after 5pm", query="?campaign=spring")
    assert resp.status_code == 200, resp.text
    assert decide(harness, phone).action == decision_pb2.DIAL_ACTION_NEVER


def test_an_ordinary_text_revokes_nothing_and_sends_nothing(harness: Harness) -> None:
    phone = number()
    resp = sms(harness, phone, "Yes please call me after 5pm")
    assert resp.status_code == 200
    assert "<Message>" not in resp.text
    assert decide(harness, phone).action == decision_pb2.DIAL_ACTION_DIAL_NOW


def email_post(h: Harness, doc: dict[str, str], secret: str = WEBHOOK_SECRET) -> httpx.Response:
    body = json.dumps(doc).encode()
    headers = {
        "Content-Type": "application/json",
        **standard_webhook_headers(secret, "msg_" + uuid.uuid4().hex, body),
    }
    return httpx.post(f"{h.url}/v1/replies/acme/email", content=body, headers=headers)


def test_an_email_unsubscribe_stops_the_next_call(harness: Harness) -> None:
    phone, email = number(), f"pat-{uuid.uuid4().hex[:6]}@example.com"
    assert decide(harness, phone, email).action == decision_pb2.DIAL_ACTION_DIAL_NOW
    resp = email_post(
        harness,
        {
            "from": f"Pat <{email}>",
            "subject": "Re: Your quote",
            "text": "unsubscribe\n\nOn Mon, ACME <news@acme.example> wrote:\n> Great offer inside!\n",
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["revoked"] is True
    assert decide(harness, phone, email).action == decision_pb2.DIAL_ACTION_NEVER


def test_an_unsubscribe_only_in_the_quoted_footer_is_not_a_revocation(harness: Harness) -> None:
    phone, email = number(), f"sam-{uuid.uuid4().hex[:6]}@example.com"
    resp = email_post(
        harness,
        {
            "from": email,
            "subject": "Re: Your quote",
            "text": "Thursday at 10 works for me.\n\nOn Mon, ACME wrote:\n> To unsubscribe click here\n",
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["revoked"] is False
    assert decide(harness, phone, email).action == decision_pb2.DIAL_ACTION_DIAL_NOW


def test_a_do_not_call_disposition_on_the_call_status_path_stops_the_next_call(harness: Harness) -> None:
    phone = number()
    url = f"{harness.url}/v1/calls/acme/status"
    params = [
        ("AgentId", "agent-7"),
        ("CallSid", "CA" + uuid.uuid4().hex),
        ("Disposition", "do_not_call"),
        ("To", phone),
    ]
    body, headers = twilio_request(url, params)
    resp = httpx.post(url, content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["revocation"]["revoked"] is True
    assert decide(harness, phone).action == decision_pb2.DIAL_ACTION_NEVER


@pytest.mark.parametrize("route", ["sms", "email", "disposition"])
def test_a_bad_signature_is_401_and_changes_nothing(harness: Harness, route: str) -> None:
    phone, email = number(), f"kim-{uuid.uuid4().hex[:6]}@example.com"
    before = len(revocations(harness))
    if route == "email":
        body = json.dumps({"from": email, "text": "STOP"}).encode()
        wrong = standard_webhook_headers("whsec_" + "d3Jvbmcta2V5LXdyb25nLWtleQ==", "msg_1", body)
        stale = standard_webhook_headers(WEBHOOK_SECRET, "msg_2", body, ts=int(time.time()) - 3600)
        url = f"{harness.url}/v1/replies/acme/email"
        for headers in (wrong, stale, {}):
            resp = httpx.post(url, content=body, headers={"Content-Type": "application/json", **headers})
            assert resp.status_code == 401, resp.text
    else:
        url = (
            f"{harness.url}/v1/replies/acme/sms" if route == "sms" else f"{harness.url}/v1/calls/acme/status"
        )
        params = [
            ("Body", "STOP"),
            ("CallSid", "CA1"),
            ("Disposition", "dnc"),
            ("From", phone),
            ("MessageSid", "SM1"),
            ("To", phone),
        ]
        body, headers = twilio_request(url, params, token=TWILIO_AUTH_TOKEN + "x")
        assert httpx.post(url, content=body, headers=headers).status_code == 401
        assert (
            httpx.post(url, content=body, headers={"Content-Type": headers["Content-Type"]}).status_code
            == 401
        )
        # Signed for another URL (the query is part of what Twilio signs).
        body, headers = twilio_request(url, params)
        assert httpx.post(url + "?campaign=x", content=body, headers=headers).status_code == 401
    assert len(revocations(harness)) == before
    assert decide(harness, phone, email).action == decision_pb2.DIAL_ACTION_DIAL_NOW


def test_malformed_replies_are_400_naming_the_field(harness: Harness) -> None:
    url = f"{harness.url}/v1/replies/acme/sms"
    params = [("Body", "STOP"), ("From", number()), ("MessageSid", "SM\u00b2")]
    body, headers = twilio_request(url, params)
    resp = httpx.post(url, content=body, headers=headers)
    assert resp.status_code == 400
    assert resp.json()["error"]["field"] == "MessageSid"
    bad_email = email_post(harness, {"from": "not-an-address", "text": "STOP"})
    assert bad_email.status_code == 400
    assert bad_email.json()["error"]["field"] == "from"
    for sender in ("pat\u0000@example.com", "p\u00e4t@example.com"):
        refused = email_post(harness, {"from": sender, "text": "STOP"})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["field"] == "from"
    body = json.dumps({"from": "pat@example.com", "text": "STOP"}).encode()
    headers = {"Content-Type": "application/json", **standard_webhook_headers(WEBHOOK_SECRET, "msg_x", body)}
    headers["webhook-timestamp"] = "\u00b9" + headers["webhook-timestamp"][1:]
    raw = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]  # a superscript one
    odd = httpx.post(f"{harness.url}/v1/replies/acme/email", content=body, headers=raw)
    assert odd.status_code == 400
    assert odd.json()["error"]["field"] == "webhook-timestamp"

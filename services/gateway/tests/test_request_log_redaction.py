"""What the inbound request log keeps of a request: never a credential, in a header, the query or
a body field; everything else as it came."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from leadflow_gateway.request_log import REDACTED, kept_body, kept_headers, kept_query


def test_secret_headers_are_dropped_whatever_their_case_and_others_are_kept() -> None:
    raw = [
        (b"Authorization", b"Bearer lf_live_abc"),
        (b"X-Hub-Signature-256", b"sha256=00"),
        (b"X-HubSpot-Signature-v3", b"sig"),
        (b"X-Twilio-Signature", b"sig"),
        (b"webhook-signature", b"v1,abc"),
        (b"X-Leadflow-Secret", b"zap"),
        (b"Cookie", b"session=1"),
        (b"X-Custom-Zap-Token", b"custom"),
        (b"X-My-Secret-Header", b"configured"),
        (b"Content-Type", b"application/json"),
        (b"Idempotency-Key", b"k-1"),
        (b"webhook-id", b"msg_1"),
        (b"X-Forwarded-For", b"203.0.113.9"),
        (b"X-Forwarded-For", b"10.0.0.1"),
    ]
    kept = kept_headers(raw, {"X-My-Secret-Header"})
    assert kept == {
        "content-type": "application/json",
        "idempotency-key": "k-1",
        "webhook-id": "msg_1",
        "x-forwarded-for": "203.0.113.9, 10.0.0.1",
    }


def test_a_sources_own_secret_header_is_dropped() -> None:
    assert kept_headers([(b"X-Zap-Pass", b"p")], {"x-zap-pass"}) == {}


def test_secret_query_parameters_and_body_fields_are_redacted() -> None:
    query = parse_qs(kept_query("hub.mode=subscribe&hub.verify_token=t0k&hub.challenge=42"))
    assert query == {"hub.mode": ["subscribe"], "hub.verify_token": [REDACTED], "hub.challenge": ["42"]}
    body = json.dumps({"google_key": "gk", "lead_id": "L1", "user_column_data": []}).encode()
    assert json.loads(kept_body("application/json", body)) == {
        "google_key": REDACTED,
        "lead_id": "L1",
        "user_column_data": [],
    }
    form = kept_body("application/x-www-form-urlencoded; charset=utf-8", b"first_name=Ada&form_key=fk")
    assert b"fk" not in form
    assert b"first_name=Ada" in form
    # Bodies without a secret field are kept byte for byte.
    raw = b'{"first_name": "Ada",   "phone": "+12125550123"}'
    assert kept_body("application/json", raw) == raw
    assert kept_body("text/xml", b"<soap/>") == b"<soap/>"

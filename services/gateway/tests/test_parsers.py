"""Vendor wire formats parsed from documented examples; hostile XML refused."""

from __future__ import annotations

import hashlib
import json

import pytest
from starlette.requests import Request

from leadflow.v1 import tenant_pb2
from leadflow_gateway.backends import SourceContext
from leadflow_gateway.errors import GatewayError
from leadflow_gateway.sources import calls, google, hubspot, meta, salesforce
from services.gateway.tests.gateway_vendors import (
    GOOGLE_KEY,
    SF_ORG_ID,
    google_body,
    hubspot_workflow_body,
    meta_notification,
    salesforce_message,
    twilio_status,
)


def ctx(secrets: dict[str, str] | None = None, options: dict[str, str] | None = None) -> SourceContext:
    cfg = tenant_pb2.SourceConfig(secrets=secrets or {}, options=options or {})
    return SourceContext("acme", "x", cfg, tenant_pb2.TenantPolicy(default_region="US"))


def test_meta_many_changes_each_a_lead() -> None:
    doc = json.loads(meta_notification([("111", "9"), ("222", "9")]))
    doc["entry"].append({"id": "77", "time": 1, "changes": [{"field": "feed", "value": {}}]})
    changes = meta.parse_notification(doc)
    assert [c.leadgen_id for c in changes] == ["111", "222"]
    assert changes[0].page_id == "1234567890"
    with pytest.raises(GatewayError) as err:
        meta.parse_notification(
            {"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {}}]}]}
        )
    assert err.value.field == "entry.0.changes.0.value.leadgen_id"


def test_meta_handshake() -> None:
    c = ctx({"verify_token": "tok"})
    assert (
        meta.handshake(c, {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1158201444"})
        == "1158201444"
    )
    with pytest.raises(GatewayError):
        meta.handshake(c, {"hub.mode": "subscribe", "hub.verify_token": "bad", "hub.challenge": "1"})


def test_meta_field_data_mapping() -> None:
    change = meta.LeadgenChange("111", "1", "9", "4", "5", "")
    graph = {
        "id": "111",
        "created_time": "2024-03-01T10:00:00+0000",
        "field_data": [
            {"name": "full_name", "values": ["Renée Dupont"]},
            {"name": "phone_number", "values": ["+13055550123"]},
            {"name": "email", "values": ["renee@example.com"]},
            {"name": "what_service_do_you_need?", "values": ["Furnace repair", "No heat"]},
        ],
    }
    mapped = meta.map_graph_lead(graph, change, {})
    assert mapped.get("full_name") == "Renée Dupont"
    assert mapped.get("phone") == "+13055550123"
    assert mapped.custom["what_service_do_you_need?"] == "Furnace repair, No heat"
    assert mapped.custom["meta.form_id"] == "9"


def test_salesforce_outbound_message() -> None:
    msg = salesforce.parse(salesforce_message([("04l5g000000001AAA", "00Q5g000001AAA", "(305) 555-0123")]))
    assert msg.organization_id == SF_ORG_ID
    (n,) = msg.notifications
    assert n.notification_id == "04l5g000000001AAA"
    assert n.object_type == "Lead"
    mapped = salesforce.to_mapped(n, {})
    assert mapped.get("first_name") == "Grace"
    assert mapped.get("phone") == "(305) 555-0123"
    assert mapped.custom["salesforce.record_id"] == "00Q5g000001AAA"
    assert "MobilePhone" not in mapped.custom
    assert salesforce.org_allowed(
        ctx(options={"allowed_org_ids": f"00Dxx0000000000AAA, {SF_ORG_ID[:15]}"}), SF_ORG_ID
    )
    assert not salesforce.org_allowed(ctx(options={"allowed_org_ids": "00Dxx0000000000AAA"}), SF_ORG_ID)
    assert not salesforce.org_allowed(ctx(), SF_ORG_ID)


def test_salesforce_limits_and_hostile_xml() -> None:
    too_many = [(f"04l5g00000{i:04d}AAA", "00Q", "3055550123") for i in range(101)]
    with pytest.raises(GatewayError) as err:
        salesforce.parse(salesforce_message(too_many))
    assert err.value.field == "Notification"
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><a>&lol2;</a>'
    )
    external = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>'
    for body in (bomb, external, b"<not xml", b"<a/>"):
        with pytest.raises(GatewayError) as err:
            salesforce.parse(body)
        assert err.value.status == 400


def test_google_lead_form() -> None:
    doc = json.loads(google_body("TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ", "+13055550123", is_test=True))
    assert doc["google_key"] == GOOGLE_KEY
    mapped, lead_id, is_test = google.parse(doc, {})
    assert lead_id.startswith("TeSter")
    assert is_test
    assert mapped.get("full_name") == "Alan Turing"
    assert mapped.get("postal_code") == "33101"
    assert mapped.custom["What do you need?"] == "gas smell in kitchen"
    assert mapped.custom["google.campaign_id"] == "7654321"
    with pytest.raises(GatewayError):
        google.parse({"user_column_data": []}, {})


def test_hubspot_workflow_and_flat_bodies() -> None:
    ((mapped, vendor_id),) = hubspot.parse(json.loads(hubspot_workflow_body(901, "3055550123")), {})
    assert vendor_id == "901"
    assert mapped.get("email") == "Ada.Lovelace@Example.com"
    ((flat, flat_id),) = hubspot.parse({"firstname": "Bo", "phone": "1", "hs_object_id": 5}, {})
    assert flat_id == "5"
    assert flat.get("first_name") == "Bo"


def test_twilio_status_to_dispatcher_request() -> None:
    req = calls.to_request("acme", twilio_status("CA123", "no-answer"))
    assert (req.provider_call_id, req.status, req.duration_seconds) == ("CA123", "no-answer", 42)
    assert "5550123" not in req.params["To"]  # numbers masked before they leave the gateway
    with pytest.raises(GatewayError) as err:
        calls.to_request("acme", [("CallSid", "CA1"), ("CallStatus", "exploded")])
    assert err.value.field == "CallStatus"


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), val.encode()) for k, val in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/h", "headers": raw, "query_string": b""})


def test_hubspot_legacy_signatures_only_when_the_tenant_allows_them() -> None:
    body, url = b'{"objectId":1}', "https://gw.example/v1/webhooks/acme/hubspot"
    v1 = {
        "X-HubSpot-Signature": hashlib.sha256(b"s3cret" + body).hexdigest(),
        "X-HubSpot-Signature-Version": "v1",
    }
    strict = ctx({"client_secret": "s3cret"})
    lenient = ctx({"client_secret": "s3cret"}, {"allow_legacy_signatures": "true"})
    with pytest.raises(GatewayError) as err:
        hubspot.verify(strict, _request(v1), url, body, 300)
    assert err.value.status == 401
    hubspot.verify(lenient, _request(v1), url, body, 300)
    with pytest.raises(GatewayError):
        hubspot.verify(lenient, _request({**v1, "X-HubSpot-Signature": "0" * 64}), url, body, 300)

"""Consent evidence through the gateway: what the API and web forms supply, and unverified consent
stored but not dialed (real compliance, dispatcher and gateway processes)."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

import httpx

from leadflow.v1 import dispatcher_pb2
from services.gateway.tests.gateway_vendors import FORM_KEY
from services.gateway.tests.harness import Harness


def number() -> str:
    return f"+1212555{uuid.uuid4().int % 10000:04d}"


def api(h: Harness, consent: dict[str, object]) -> httpx.Response:
    return httpx.post(
        f"{h.url}/v1/leads",
        json={"phone": number(), "first_name": "Eve", "consent": consent},
        headers={"Authorization": f"Bearer {h.api_keys['acme']}"},
    )


def reasons(resp: httpx.Response) -> set[str]:
    return {r["rule_id"] for r in resp.json()["dial"]["reasons"]}


def test_consent_with_only_a_disclosure_is_stored_unverified_and_not_dialed(harness: Harness) -> None:
    resp = api(harness, {"granted": True, "disclosure_text": "I agree to be called"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["dial"]["state"] == "blocked"
    assert "consent.unverified" in reasons(resp)
    (reason,) = [r for r in resp.json()["dial"]["reasons"] if r["rule_id"] == "consent.unverified"]
    assert "seller" in reason["message"]


def test_consent_with_full_evidence_is_not_refused_for_consent(harness: Harness) -> None:
    resp = api(
        harness,
        {
            "granted": True,
            "disclosure_version": "tcpa-2026-01",
            "seller": "acme",
            "trustedform_cert_url": "https://cert.trustedform.com/abc123",
        },
    )
    assert resp.status_code == 202, resp.text
    assert not {r for r in reasons(resp) if r.startswith("consent.")}


def test_a_web_form_submission_is_its_own_evidence(harness: Harness) -> None:
    form = {"form_key": FORM_KEY, "first_name": "Fay", "phone": number(), "consent": "on"}
    resp = httpx.post(
        f"{harness.url}/v1/webhooks/acme/form",
        content=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 202, resp.text
    assert not {r for r in reasons(resp) if r.startswith("consent.")}
    stored = harness.dispatch().GetLead(
        dispatcher_pb2.GetLeadRequest(tenant="acme", lead_id=resp.json()["lead_id"])
    )
    consent = stored.lead.consent
    assert consent.seller == "acme"
    assert consent.form_submission_id.startswith("form:")
    assert consent.disclosure_text.startswith("By submitting")

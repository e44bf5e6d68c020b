"""API keys at the HTTP edge: an ingest-only key submits but cannot read leads back, and a revoked
key is refused from the very next request (the gateway keeps no cache that could outlive it)."""

from __future__ import annotations

import uuid

import httpx

from leadflow.v1 import tenants_pb2
from services.gateway.tests.harness import Harness

T = "acme"


def _leads(harness: Harness) -> int:
    """The shared tenant's stored leads. (Its jobs and events may still grow from earlier tests'
    leads while this one runs; a lead is stored before its 2xx, so this count is settled.)"""
    return harness.rows(T)["dispatcher_leads"]


def _lead() -> dict[str, str]:
    return {"phone": "+12125550143", "first_name": "Scope", "vendor_lead_id": uuid.uuid4().hex}


def _key(harness: Harness, name: str, scopes: list[str]) -> str:
    reply = harness.admin().CreateApiKey(
        tenants_pb2.CreateApiKeyRequest(name=T, key_name=f"{name}-{uuid.uuid4().hex[:6]}", scopes=scopes)
    )
    return reply.api_key


def test_an_ingest_only_key_cannot_read_leads(harness: Harness) -> None:
    ingest = {"Authorization": f"Bearer {_key(harness, 'ingest', ['ingest'])}"}
    both = {"Authorization": f"Bearer {_key(harness, 'both', ['ingest', 'read'])}"}
    read = {"Authorization": f"Bearer {_key(harness, 'read', ['read'])}"}

    stored = httpx.post(f"{harness.url}/v1/leads", json=_lead(), headers=ingest)
    assert stored.status_code == 202, stored.text
    timeline = f"{harness.url}/v1/leads/{stored.json()['lead_id']}/timeline"

    refused = httpx.get(timeline, headers=ingest)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert httpx.get(timeline, headers=both).status_code == 200
    assert httpx.get(timeline, headers=read).status_code == 200
    # A read-only key cannot submit, and leaves nothing behind trying.
    rows_before = _leads(harness)
    assert httpx.post(f"{harness.url}/v1/leads", json=_lead(), headers=read).status_code == 403
    assert _leads(harness) == rows_before


def test_a_revoked_key_is_refused_at_once(harness: Harness) -> None:
    admin = harness.admin()
    made = admin.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=T, key_name=f"rev-{uuid.uuid4().hex[:6]}"))
    other = _key(harness, "stays", [])
    auth = {"Authorization": f"Bearer {made.api_key}"}
    # Used (and so verified and cached by compliance) right before it is revoked.
    for _ in range(3):
        assert httpx.post(f"{harness.url}/v1/leads", json=_lead(), headers=auth).status_code == 202
    admin.RevokeApiKey(tenants_pb2.RevokeApiKeyRequest(tenant=T, key_id=made.key_id))
    refused = httpx.post(f"{harness.url}/v1/leads", json=_lead(), headers=auth)
    assert refused.status_code == 401
    assert made.api_key not in refused.text
    still = httpx.post(f"{harness.url}/v1/leads", json=_lead(), headers={"Authorization": f"Bearer {other}"})
    assert still.status_code == 202

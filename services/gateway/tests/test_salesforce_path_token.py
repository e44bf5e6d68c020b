"""Salesforce Outbound Messages sign nothing: a source's `path_token` makes its URL unguessable
(any other path is an unknown source) and `allowedSourceRanges` admits only the listed networks."""

from __future__ import annotations

import secrets
import uuid

import grpc
import httpx
import pytest
from sqlalchemy import text

from leadflow_core.tenant_spec import TenantSpec
from leadflow_core.testing import wait_for
from leadflow_gateway.sources.salesforce import ACK
from services.gateway.tests.gateway_vendors import SF_HEADERS, SF_ORG_ID, salesforce_message
from services.gateway.tests.harness import Harness


def _tenant(harness: Harness, ranges: list[str], token: str) -> str:
    name = f"sf-{uuid.uuid4().hex[:8]}"
    spec = {
        "displayName": "Salesforce path token",
        "policy": {"defaultRegion": "US"},
        "sources": {
            "salesforce": {
                "secretRef": {"name": "sf"},
                "options": {"allowed_org_ids": SF_ORG_ID},
                "allowedSourceRanges": ranges,
            }
        },
    }
    harness.apply(name, spec, {"salesforce": {"path_token": token}})
    return name


def _message() -> bytes:
    n = uuid.uuid4().hex[:8]
    return salesforce_message([(f"04l5g{n}01AAA", "00Q5g000001AAA", "212-555-0130")])


def test_only_the_path_ending_in_the_token_takes_messages(harness: Harness) -> None:
    token = secrets.token_urlsafe(32)
    tenant = _tenant(harness, ["127.0.0.0/8", "::1/128"], token)
    base = f"{harness.url}/v1/webhooks/{tenant}/salesforce"
    for path in (base, f"{base}/{secrets.token_urlsafe(32)}", f"{base}/{token[:-1]}"):
        refused = httpx.post(path, content=_message(), headers=SF_HEADERS)
        assert refused.status_code == 404, path
        assert token not in refused.text
    assert harness.rows(tenant)["dispatcher_leads"] == 0
    ok = httpx.post(f"{base}/{token}", content=_message(), headers=SF_HEADERS)
    assert ok.status_code == 200, ok.text
    assert ok.text == ACK
    assert harness.rows(tenant)["dispatcher_leads"] == 1

    # The request log keeps the request (for replay) under the path without its token.
    def logged() -> list[tuple[str, int]]:
        with harness.db.connect() as conn:
            rows = conn.execute(
                text("SELECT path, status FROM dispatcher_inbound_requests WHERE tenant = :t"), {"t": tenant}
            ).all()
        return [(r[0], r[1]) for r in rows]

    kept = wait_for(lambda: [r for r in logged() if r[1] == 200], timeout=30, what="the logged request")
    assert kept == [(f"/v1/webhooks/{tenant}/salesforce", 200)]
    assert all(token not in path for path, _ in logged())


def test_a_sender_outside_the_allowed_ranges_is_refused(harness: Harness) -> None:
    token = secrets.token_urlsafe(32)
    tenant = _tenant(harness, ["203.0.113.0/24"], token)
    refused = httpx.post(
        f"{harness.url}/v1/webhooks/{tenant}/salesforce/{token}", content=_message(), headers=SF_HEADERS
    )
    assert refused.status_code == 403
    harness.assert_nothing_left(tenant)


def test_a_short_path_token_or_a_bad_network_is_refused_when_applied(harness: Harness) -> None:
    with pytest.raises(grpc.RpcError) as short:
        _tenant(harness, [], "too-short")
    assert short.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(ValueError, match="CIDR"):
        TenantSpec.model_validate({"sources": {"salesforce": {"allowedSourceRanges": ["10.0.0.0/33"]}}})

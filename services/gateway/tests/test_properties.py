"""Arbitrary bodies and headers at every endpoint: never a 5xx, never a row from a refused request."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway.tests import gateway_vendors as v
from services.gateway.tests.harness import Harness

T = "refused"
ENDPOINTS = [
    "/v1/leads",
    f"/v1/webhooks/{T}/meta",
    f"/v1/webhooks/{T}/hubspot",
    f"/v1/webhooks/{T}/salesforce",
    f"/v1/webhooks/{T}/zapier",
    f"/v1/webhooks/{T}/marketo",
    f"/v1/webhooks/{T}/google",
    f"/v1/webhooks/{T}/form",
    f"/v1/calls/{T}/status",
]
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "text/xml; charset=utf-8",
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "",
    ]
)
HEADER_NAMES = st.sampled_from(
    [
        "Authorization",
        "X-Hub-Signature-256",
        "X-HubSpot-Signature-v3",
        "X-HubSpot-Request-Timestamp",
        "X-HubSpot-Signature",
        "X-HubSpot-Signature-Version",
        "X-Twilio-Signature",
        "X-Leadflow-Secret",
        "X-Form-Key",
        "Idempotency-Key",
        "Origin",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "X-Request-Id",
    ]
)
# Header values must be latin-1 text without line breaks or outer spaces to be sent at all.
HEADER_VALUES = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
).map(lambda text: text.strip())
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=12,
)
BODIES = st.one_of(
    st.binary(max_size=512),
    JSONISH.map(lambda d: json.dumps(d).encode()),
    st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=6).map(
        lambda d: urlencode(d).encode()
    ),
)
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("path", ENDPOINTS)
def test_arbitrary_requests_never_5xx_never_stored(harness: Harness, path: str) -> None:
    with httpx.Client(base_url=harness.url, timeout=30) as client:

        @FUZZ
        @given(
            body=BODIES,
            content_type=CONTENT_TYPES,
            headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
        )
        def run(body: bytes, content_type: str, headers: dict[str, str]) -> None:
            sent = {k.encode(): val.encode("latin-1") for k, val in headers.items()}
            if content_type:
                sent[b"Content-Type"] = content_type.encode()
            resp = client.post(path, content=body, headers=sent)
            assert resp.status_code < 500, resp.text
            assert resp.status_code >= 400, resp.text  # nothing here carries valid credentials
            assert "error" in resp.json()

        run()
    harness.assert_nothing_left(T)


def test_signed_arbitrary_bodies_never_5xx(harness: Harness) -> None:
    """With valid signatures the parsers see everything; a refusal still stores nothing."""
    meta = f"{harness.url}/v1/webhooks/{T}/meta"
    hubspot = f"{harness.url}/v1/webhooks/{T}/hubspot"
    with httpx.Client(timeout=30) as client:

        @FUZZ
        @given(body=BODIES)
        def run(body: bytes) -> None:
            before = harness.rows(T)["dispatcher_leads"]
            for url, headers in (
                (meta, v.meta_headers(body)),
                (hubspot, v.hubspot_headers(hubspot, body, timestamp_ms=int(time.time() * 1000))),
            ):
                resp = client.post(url, content=body, headers=headers)
                assert resp.status_code < 500, resp.text
                if resp.status_code >= 400:
                    assert harness.rows(T)["dispatcher_leads"] == before

        run()

"""Every refusal, each asserted together with "nothing stored, nothing queued"."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
import pytest

from leadflow_core.testing import ServiceProcess
from leadflow_gateway.ratelimit import WINDOW_SECONDS
from services.gateway.tests import gateway_vendors as v
from services.gateway.tests.harness import SECRETS, Harness, all_sources_spec

T = "refused"
JSON = {"Content-Type": "application/json"}
BIG = b'{"pad": "' + b"x" * 70_000 + b'"}'


@dataclass
class Case:
    name: str
    path: str
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    field: str | None = None
    method: str = "POST"


def cases(api_key: str) -> list[Case]:
    api = {"Authorization": f"Bearer {api_key}", **JSON}
    meta_ok = v.meta_notification([("123", "1")])
    meta_bad = json.dumps(
        {"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {}}]}]}
    ).encode()
    hs = v.hubspot_workflow_body(1, "2125550100")
    form = urlencode({"form_key": v.FORM_KEY, "phone": "2125550100", "_honeypot": "http://spam"}).encode()
    form_hdr = {"Content-Type": "application/x-www-form-urlencoded"}
    url_calls = f"/v1/calls/{T}/status"
    return [
        # 401: missing or wrong credentials or signatures.
        Case("api-no-key", "/v1/leads", 401, b'{"phone":"2125550100"}', JSON),
        Case(
            "api-wrong-key",
            "/v1/leads",
            401,
            b'{"phone":"2125550100"}',
            {"Authorization": "Bearer nope", **JSON},
        ),
        Case("meta-no-sig", f"/v1/webhooks/{T}/meta", 401, meta_ok, JSON),
        Case("meta-wrong-sig", f"/v1/webhooks/{T}/meta", 401, meta_ok, v.meta_headers(meta_ok, "other")),
        Case(
            "meta-handshake",
            f"/v1/webhooks/{T}/meta?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1",
            401,
            method="GET",
        ),
        Case("hubspot-wrong-secret", f"/v1/webhooks/{T}/hubspot", 401, hs, {"__hubspot__": "other"}),
        Case("hubspot-stale", f"/v1/webhooks/{T}/hubspot", 401, hs, {"__hubspot__": "stale"}),
        Case(
            "hubspot-v1-not-allowed",
            f"/v1/webhooks/{T}/hubspot",
            401,
            hs,
            {"X-HubSpot-Signature": "0" * 64, **JSON},
        ),
        Case(
            "salesforce-org",
            f"/v1/webhooks/{T}/salesforce",
            401,
            v.salesforce_message([("04l5g0000000001AAA", "00Q", "2125550100")], org_id="00D000000000000AAA"),
            v.SF_HEADERS,
        ),
        Case(
            "google-key",
            f"/v1/webhooks/{T}/google",
            401,
            v.google_body("L1", "2125550100", key="wrong"),
            JSON,
        ),
        Case(
            "zapier-secret",
            f"/v1/webhooks/{T}/zapier",
            401,
            b'{"phone":"2125550100"}',
            {"X-Leadflow-Secret": "wrong", **JSON},
        ),
        Case("marketo-missing", f"/v1/webhooks/{T}/marketo", 401, b'{"phone":"2125550100"}', JSON),
        Case("form-key", f"/v1/webhooks/{T}/form", 401, b'{"form_key":"wrong","phone":"2125550100"}', JSON),
        Case(
            "form-origin",
            f"/v1/webhooks/{T}/form",
            401,
            b'{"form_key":"%s","phone":"2125550100"}' % v.FORM_KEY.encode(),
            {"Origin": "https://evil.example", **JSON},
        ),
        Case(
            "twilio-sig",
            url_calls,
            401,
            urlencode(v.twilio_status("CA1")).encode(),
            {"X-Twilio-Signature": "bad", **form_hdr},
        ),
        # 400: names the field.
        Case("api-no-phone", "/v1/leads", 400, b'{"first_name":"A"}', api, "phone"),
        Case("api-bad-email", "/v1/leads", 400, b'{"phone":"2125550100","email":"x@"}', api, "email"),
        Case("api-bad-phone", "/v1/leads", 400, b'{"phone":"12"}', api, "phone"),
        Case("api-unknown-field", "/v1/leads", 400, b'{"phone":"2125550100","ssn":"1"}', api, "ssn"),
        Case(
            "api-bad-consent",
            "/v1/leads",
            400,
            b'{"phone":"2125550100","consent":{"granted":"maybe"}}',
            api,
            "consent.granted",
        ),
        Case("api-not-json", "/v1/leads", 400, b"{nope", api, "body"),
        Case("api-array", "/v1/leads", 400, b"[]", api, "body"),
        Case(
            "meta-malformed",
            f"/v1/webhooks/{T}/meta",
            400,
            meta_bad,
            v.meta_headers(meta_bad),
            "entry.0.changes.0.value.leadgen_id",
        ),
        Case("form-honeypot", f"/v1/webhooks/{T}/form", 400, form, form_hdr, "_honeypot"),
        Case(
            "salesforce-101",
            f"/v1/webhooks/{T}/salesforce",
            400,
            v.salesforce_message([(f"04l5g00000{i:04d}AAA", "00Q", "2125550100") for i in range(101)]),
            v.SF_HEADERS,
            "Notification",
        ),
        Case(
            "google-no-lead-id",
            f"/v1/webhooks/{T}/google",
            400,
            json.dumps({"google_key": v.GOOGLE_KEY, "user_column_data": []}).encode(),
            JSON,
            "lead_id",
        ),
        # 404: unknown tenant, or a source the tenant has not enabled.
        Case("unknown-tenant", "/v1/webhooks/nobody/form", 404, b"{}", JSON),
        Case("bad-tenant-name", "/v1/webhooks/NO_SUCH/meta", 404, b"{}", JSON),
        Case("source-not-enabled", "/v1/webhooks/api-only/hubspot", 404, hs, JSON),
        Case("unknown-source", f"/v1/webhooks/{T}/myspace", 404, b"{}", JSON),
        Case("calls-unknown-tenant", "/v1/calls/nobody/status", 404, b"CallSid=CA1", form_hdr),
        # 413 over the source's size limit.
        Case("api-too-big", "/v1/leads", 413, BIG, api),
        Case("meta-too-big", f"/v1/webhooks/{T}/meta", 413, BIG, v.meta_headers(BIG)),
        Case("form-too-big", f"/v1/webhooks/{T}/form", 413, BIG, JSON),
        # 415 for a wrong content type.
        Case("api-text", "/v1/leads", 415, b'{"phone":"2125550100"}', {**api, "Content-Type": "text/plain"}),
        Case(
            "meta-form",
            f"/v1/webhooks/{T}/meta",
            415,
            meta_ok,
            {**v.meta_headers(meta_ok), "Content-Type": "text/plain"},
        ),
        Case("salesforce-json", f"/v1/webhooks/{T}/salesforce", 415, b"{}", JSON),
        Case("form-xml", f"/v1/webhooks/{T}/form", 415, b"<a/>", {"Content-Type": "application/xml"}),
    ]


@pytest.fixture(scope="module")
def refusal_cases(harness: Harness) -> dict[str, Case]:
    return {c.name: c for c in cases(harness.api_keys[T])}


@pytest.mark.parametrize("name", [c.name for c in cases("k")])
def test_refusal_leaves_nothing(harness: Harness, refusal_cases: dict[str, Case], name: str) -> None:
    case = refusal_cases[name]
    headers = dict(case.headers)
    path = case.path
    marker = headers.pop("__hubspot__", None)
    if marker is not None:
        url = f"{harness.url}{path}"
        if marker == "stale":
            headers.update(v.hubspot_headers(url, case.body, timestamp_ms=int((time.time() - 301) * 1000)))
        else:
            headers.update(v.hubspot_headers(url, case.body, secret="other"))
    resp = httpx.request(case.method, f"{harness.url}{path}", content=case.body or None, headers=headers)
    assert resp.status_code == case.status, resp.text
    error = resp.json()["error"]
    assert error["code"]
    assert error["message"]
    if case.field is not None:
        assert error["field"] == case.field
    harness.assert_nothing_left(T)


def test_valid_twilio_signature_bad_status_is_400(harness: Harness) -> None:
    url = f"{harness.url}/v1/calls/{T}/status"
    body, headers = v.twilio_request(url, v.twilio_status("CA9", "exploded"))
    resp = httpx.post(url, content=body, headers=headers)
    assert resp.status_code == 400
    assert resp.json()["error"]["field"] == "CallStatus"
    harness.assert_nothing_left(T)


def _limited_gateway(harness: Harness, name: str, ip: int, tenant: int) -> ServiceProcess:
    # Its own key prefix: the counters are shared by every gateway of one Redis, by design.
    return harness.start_gateway(
        name,
        {
            "LEADFLOW_RATE_LIMIT_IP_PER_MINUTE": str(ip),
            "LEADFLOW_RATE_LIMIT_TENANT_PER_MINUTE": str(tenant),
            "LEADFLOW_REDIS_PREFIX": f"{harness.redis_prefix}{name}:",
        },
    )


def _inside_one_window() -> float:
    """Wait until at least 20 s of the limits' one-minute window are left (a run that crossed a
    boundary would start its counts afresh); the window's end."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < 20:
        time.sleep(left + 0.5)
    return (time.time() // WINDOW_SECONDS + 1) * WINDOW_SECONDS


def test_rate_limits_per_tenant_then_per_ip_429_with_retry_after(harness: Harness) -> None:
    proc = _limited_gateway(harness, "gateway-limited", ip=5, tenant=2)
    try:
        base = f"http://127.0.0.1:{proc.port}/v1/webhooks"
        wrong = {"X-Leadflow-Secret": "wrong"}
        window_ends = _inside_one_window()
        sent = time.time()
        answers = [
            httpx.post(f"{base}/{T}/zapier", json={"phone": "2125550100"}, headers=wrong) for _ in range(3)
        ]
        answers += [
            httpx.post(f"{base}/acme/zapier", json={"phone": "2125550100"}, headers=wrong) for _ in range(3)
        ]
    finally:
        code = proc.stop()
    assert code == 0, proc.tail()  # SIGTERM: a graceful stop
    assert [a.status_code for a in answers] == [401, 401, 429, 401, 401, 429]
    assert "tenant" in answers[2].json()["error"]["message"]
    assert "ip" in answers[5].json()["error"]["message"]
    # Until the window ends (whole seconds, rounded up past it), from when the requests went out.
    for limited in (answers[2], answers[5]):
        wait = int(limited.headers["retry-after"])
        assert int(window_ends - time.time()) <= wait <= int(window_ends - sent) + 1
    harness.assert_nothing_left(T)


def test_signed_status_callbacks_pass_every_limit_refused_ones_count_per_ip(harness: Harness) -> None:
    # Twilio does not retry a refused callback: a 429 would lose the call's outcome. Signed
    # callbacks are not counted; refused ones are, against the sender's IP.
    tenant = "callbacks-limited"
    harness.apply(tenant, all_sources_spec(), SECRETS)
    proc = _limited_gateway(harness, "gateway-callbacks-limited", ip=3, tenant=1)
    try:
        url = f"http://127.0.0.1:{proc.port}/v1/calls/{tenant}/status"
        _inside_one_window()

        def signed(n: int) -> int:
            body, headers = v.twilio_request(url, v.twilio_status(f"CA{n}limits", "ringing"))
            return httpx.post(url, content=body, headers=headers).status_code

        def forged(n: int) -> int:
            body, headers = v.twilio_request(url, v.twilio_status(f"CA{n}forged", "ringing"), "wrong")
            return httpx.post(url, content=body, headers=headers).status_code

        before = [signed(n) for n in range(5)]
        refused = [forged(n) for n in range(4)]
        unknown = httpx.post(
            f"http://127.0.0.1:{proc.port}/v1/calls/nobody/status",
            content=b"CallSid=CA1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        after = [signed(n) for n in range(5, 7)]
    finally:
        code = proc.stop()
    assert code == 0, proc.tail()
    assert before == [200] * 5
    assert refused == [401, 401, 401, 429]
    assert unknown.status_code == 429  # an unknown tenant is a refusal too, counted the same
    assert after == [200, 200]  # the IP's exhausted limit stops forgeries, not the carrier
    # Every signed callback reached the dispatcher (recorded for its unknown call), no forged one.
    assert harness.rows(tenant)["dispatcher_call_statuses"] == 7


@pytest.mark.parametrize("down", ["dispatcher", "compliance"])
def test_dependency_down_is_503_and_nothing_half_stored(harness: Harness, down: str) -> None:
    env = {"LEADFLOW_DISPATCHER_ADDR": "127.0.0.1:1"} if down == "dispatcher" else {}
    if down == "compliance":
        # Tenants are read from compliance too: keep that, but send evaluations nowhere by
        # pointing the gateway at a compliance that is not running, after the config is cached.
        env = {"LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:1"}
    proc = harness.start_gateway(f"gateway-no-{down}", {**env, "LEADFLOW_GATEWAY_RPC_TIMEOUT_SECONDS": "1"})
    try:
        resp = httpx.post(
            f"http://127.0.0.1:{proc.port}/v1/leads",
            json={"phone": "2125550100"},
            headers={"Authorization": f"Bearer {harness.api_keys[T]}"},
            timeout=30,
        )
        ready = httpx.get(f"http://127.0.0.1:{proc.port}/readyz", timeout=30)
    finally:
        proc.stop()
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["retry-after"]) >= 1
    assert ready.status_code == 503
    assert ready.json()["dependencies"][down] is False
    harness.assert_nothing_left(T)

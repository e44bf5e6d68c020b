"""Jornaya LeadiD check: the real client against a local fake, then a real compliance server
configured with it refusing a lead whose LeadiD the fake says is not authentic."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import grpc
import pytest

from leadflow.v1 import compliance_pb2_grpc, decision_pb2, lead_pb2, tenants_pb2_grpc
from leadflow_compliance.providers import AllConsentProofs, JornayaLeadId
from leadflow_compliance.server import start
from leadflow_compliance.settings import ComplianceSettings
from leadflow_core.grpc_clients import channel
from services.compliance.tests.conftest import make_tenant
from services.compliance.tests.test_compliance_grpc import evaluate, lead, rule_ids

KEY = "jornaya-key"
AUTHENTIC = "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D"
FORGED = "11111111-2222-4333-8444-555555555555"
UNKNOWN = "99999999-8888-4777-8666-555555555555"


class Recorder(BaseHTTPRequestHandler):
    """Remembers every request's path and key header; subclasses answer."""

    seen: list[tuple[str, str]]

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("X-Api-Key", "")))
        self.answer()

    def answer(self) -> None:
        self._send(404, {"message": "not here"})

    def _send(self, code: int, payload: dict[str, object], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class FakeJornaya(Recorder):
    """GET /authenticate?id=<LeadiD> with X-Api-Key -> {"authentic": bool}; 404 for an unknown
    token; /redirect sends the client to `elsewhere` (which must never see the key)."""

    seen: list[tuple[str, str]] = []
    elsewhere = ""

    def answer(self) -> None:
        url = urlparse(self.path)
        if url.path == "/redirect":
            self._send(302, {}, {"Location": f"{self.elsewhere}/authenticate?{url.query}"})
            return
        if self.headers.get("X-Api-Key") != KEY:
            self._send(401, {"message": "bad key"})
            return
        token = parse_qs(url.query).get("id", [""])[0]
        if token == UNKNOWN:
            self._send(404, {"message": "LeadiD not found"})
        else:
            self._send(200, {"authentic": token == AUTHENTIC})


class Elsewhere(Recorder):
    seen: list[tuple[str, str]] = []


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[str]:
    yield from _serve(Elsewhere)


@pytest.fixture(scope="module")
def jornaya(elsewhere: str) -> Iterator[str]:
    FakeJornaya.elsewhere = elsewhere
    yield from _serve(FakeJornaya)


def test_leadid_shape_is_checked_without_any_account() -> None:
    check = JornayaLeadId()
    assert check.verify("", "") == ""
    assert check.verify("", AUTHENTIC) == ""
    assert check.verify("", AUTHENTIC.lower()) == ""
    for bad in ("not-a-guid", AUTHENTIC[:-1], AUTHENTIC.replace("-", ""), AUTHENTIC + "0"):
        assert "GUID" in check.verify("", bad), bad


def test_jornaya_authenticate(jornaya: str) -> None:
    check = JornayaLeadId(f"{jornaya}/authenticate", KEY)
    FakeJornaya.seen.clear()
    assert check.verify("", AUTHENTIC) == ""
    assert FakeJornaya.seen == [(f"/authenticate?id={AUTHENTIC}", KEY)]
    assert check.verify("", FORGED) == "Jornaya LeadiD is not authentic"
    assert "not found" in check.verify("", UNKNOWN)
    # A malformed token is refused locally, never sent.
    FakeJornaya.seen.clear()
    assert "GUID" in check.verify("", "x' OR 1=1")
    assert FakeJornaya.seen == []
    # A wrong key is the provider refusing us, not the token failing: consent stands.
    assert JornayaLeadId(f"{jornaya}/authenticate", "other").verify("", FORGED) == ""


def test_jornaya_unreachable_does_not_void_consent() -> None:
    assert JornayaLeadId("http://127.0.0.1:9/authenticate", KEY, timeout=0.5).verify("", FORGED) == ""


def test_jornaya_key_never_follows_a_redirect(jornaya: str) -> None:
    Elsewhere.seen.clear()
    assert JornayaLeadId(f"{jornaya}/redirect", KEY).verify("", FORGED) == ""
    assert Elsewhere.seen == []


def test_all_checks_combine(jornaya: str) -> None:
    class Rejects:
        def verify(self, trustedform_cert_url: str, jornaya_leadid: str) -> str:
            return "TrustedForm certificate not found or expired (404)"

    both = AllConsentProofs([JornayaLeadId(f"{jornaya}/authenticate", KEY), Rejects()])
    assert both.verify("https://cert.example/x", FORGED) == (
        "Jornaya LeadiD is not authentic; TrustedForm certificate not found or expired (404)"
    )
    assert both.verify("https://cert.example/x", AUTHENTIC) == (
        "TrustedForm certificate not found or expired (404)"
    )
    assert AllConsentProofs([JornayaLeadId(f"{jornaya}/authenticate", KEY)]).verify("", AUTHENTIC) == ""


@pytest.fixture(scope="module")
def jornaya_compliance(
    jornaya: str, database_url: str, redis_url: str, redis_prefix: str
) -> Iterator[compliance_pb2_grpc.ComplianceServiceStub]:
    """A second, in-process compliance server on the same database, with Jornaya configured."""
    settings = ComplianceSettings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        compliance_addr="127.0.0.1:0",
        jornaya_url=f"{jornaya}/authenticate",
        jornaya_api_key=KEY,
    )
    service = start(settings)
    ch: grpc.Channel = channel(f"127.0.0.1:{service.running.port}", default_timeout=30.0)
    try:
        yield compliance_pb2_grpc.ComplianceServiceStub(ch)
    finally:
        ch.close()
        service.running.stop(0)
        service.close()


def _with_leadid(msg: lead_pb2.Lead, token: str) -> lead_pb2.Lead:
    msg.consent.jornaya_leadid = token
    return msg


def test_lead_with_a_forged_leadid_is_never_dialed(
    jornaya_compliance: compliance_pb2_grpc.ComplianceServiceStub,
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
) -> None:
    tenant = make_tenant(admin).name
    ok = evaluate(jornaya_compliance, _with_leadid(lead(tenant, "+12125550161"), AUTHENTIC))
    assert ok.action == decision_pb2.DIAL_ACTION_DIAL_NOW, ok
    assert "consent.proof" not in rule_ids(ok)
    for phone, token, why in (
        ("+12125550162", FORGED, "not authentic"),
        ("+12125550163", "not-a-leadid", "GUID"),
    ):
        d = evaluate(jornaya_compliance, _with_leadid(lead(tenant, phone), token))
        assert d.action == decision_pb2.DIAL_ACTION_NEVER, d
        proof = [r for r in d.reasons if r.rule_id == "consent.proof"]
        assert proof, d
        assert why in proof[0].message
        assert proof[0].statute
        assert proof[0].action == decision_pb2.DIAL_ACTION_NEVER

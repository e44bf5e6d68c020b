"""The real provider clients against local fakes speaking the vendors' wire formats."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from leadflow_compliance.providers import HttpConsentProof, HttpReassignedNumbers

API_KEY = "tf-key"
REASSIGNED = {"2125550100": "yes", "2125550101": "no"}


class FakeVendors(BaseHTTPRequestHandler):
    """TrustedForm: POST <cert url> with basic auth API:<key> claims a certificate (404 unknown).
    Reassigned Numbers Database: POST /rnd {"tn", "date"} -> {"result": "yes" | "no" | "no_data"}."""

    claimed: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/rnd":
            tn = json.loads(body)["tn"]
            self._send(200, {"result": REASSIGNED.get(tn, "no_data")})
            return
        expected = "Basic " + base64.b64encode(f"API:{API_KEY}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._send(401, {"message": "bad key"})
        elif self.path.startswith("/good"):
            FakeVendors.claimed.append(self.path)
            self._send(201, {"outcome": "success"})
        else:
            self._send(404, {"message": "certificate not found"})

    def _send(self, code: int, payload: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeVendors)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("number", "answer"), [("+12125550100", "yes"), ("+12125550101", "no"), ("+12125550102", "no_data")]
)
def test_reassigned_numbers(fake: str, number: str, answer: str) -> None:
    client = HttpReassignedNumbers(f"{fake}/rnd", "key")
    assert client.check(number, date(2026, 1, 1)) == answer


def test_reassigned_numbers_unreachable_is_no_data() -> None:
    assert (
        HttpReassignedNumbers("http://127.0.0.1:9/rnd", "key", timeout=0.5).check(
            "+12125550100", date.today()
        )
        == "no_data"
    )


def test_trustedform_claim(fake: str) -> None:
    proof = HttpConsentProof(API_KEY, fake)
    assert proof.verify(f"{fake}/good/abc123", "") == ""
    assert FakeVendors.claimed == ["/good/abc123"]
    assert "not found" in proof.verify(f"{fake}/expired/xyz", "")
    # Never send the key to another host.
    assert "not under" in proof.verify("https://evil.example/good/abc", "")
    assert FakeVendors.claimed == ["/good/abc123"]
    assert HttpConsentProof("", fake).verify(f"{fake}/expired/xyz", "") == ""

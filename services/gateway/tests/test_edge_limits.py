"""The public HTTP edge on raw sockets: oversized heads, long request lines, slow heads and bodies,
idle keep-alive connections, and control characters in fields. Each refusal stores nothing."""

from __future__ import annotations

import json
import select
import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from leadflow_core.testing import ServiceProcess
from services.gateway.tests.harness import Harness

T = "acme"


def _leads(harness: Harness) -> int:
    """The shared tenant's stored leads. (Its jobs and events may still grow from earlier tests'
    leads while this one runs; a lead is stored before its 2xx, so this count is settled.)"""
    return harness.rows(T)["dispatcher_leads"]


# Generous for a loaded machine: a client that is never cut off waits this long and fails.
READ_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def edge(harness: Harness) -> Iterator[ServiceProcess]:
    """A gateway with short edge timeouts, so a slow client is cut off within seconds."""
    proc = harness.start_gateway(
        "gateway-edge",
        {
            "LEADFLOW_EDGE_HEAD_TIMEOUT_SECONDS": "2",
            "LEADFLOW_EDGE_BODY_TIMEOUT_SECONDS": "2",
            "LEADFLOW_EDGE_KEEP_ALIVE_SECONDS": "1",
        },
    )
    yield proc
    assert proc.stop() == 0, proc.tail()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
    return sock


def _read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """Status and raw answer; fails (socket timeout) when the server never answers."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data, "connection closed without an answer"
    status = int(data.split(b" ", 2)[1])
    return status, data


def _lead_request(harness: Harness, extra_headers: bytes = b"", body: bytes | None = None) -> bytes:
    body = (
        body
        if body is not None
        else json.dumps({"phone": "+12125550143", "vendor_lead_id": uuid.uuid4().hex}).encode()
    )
    return (
        b"POST /v1/leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {harness.api_keys[T]}\r\nContent-Length: {len(body)}\r\n".encode()
        + extra_headers
        + b"\r\n"
        + body
    )


def test_oversized_headers_get_431_and_store_nothing(harness: Harness) -> None:
    before = _leads(harness)
    for extra in (
        b"X-Big: " + b"a" * 40_000 + b"\r\n",
        b"".join(f"X-H{i}: v\r\n".encode() for i in range(150)),
    ):
        with _connect(harness.gateway.port) as sock:
            sock.sendall(_lead_request(harness, extra))
            status, answer = _read_answer(sock)
        assert status == 431, answer[:200]
        assert b"headers_too_large" in answer
    assert _leads(harness) == before


def test_a_long_request_line_gets_414(harness: Harness) -> None:
    with _connect(harness.gateway.port) as sock:
        sock.sendall(b"GET /healthz?" + b"q" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _ = _read_answer(sock)
    assert status == 414


def test_a_slow_body_client_is_cut_off_with_408(harness: Harness, edge: ServiceProcess) -> None:
    before = _leads(harness)
    body = json.dumps({"phone": "+12125550143", "vendor_lead_id": uuid.uuid4().hex, "message": "m" * 400})
    whole = _lead_request(harness, body=body.encode())
    rest = whole[-400:]
    with _connect(edge.port) as sock:
        sock.sendall(whole[:-400])
        # Dribble the rest, a byte whenever the server has said nothing for 0.3 s: sending all of it
        # would take two minutes, so only a cutoff ends this loop early.
        for i in range(len(rest)):
            readable, _, _ = select.select([sock], [], [], 0.3)
            if readable:
                break
            try:
                sock.sendall(rest[i : i + 1])
            except OSError:  # closed by the server: its answer is waiting
                break
        status, answer = _read_answer(sock)
        assert status == 408, answer[:200]
        assert b"request_timeout" in answer
        assert sock.recv(65536) == b""  # and the connection is closed
    assert _leads(harness) == before


def test_a_slow_head_is_cut_off_and_an_idle_keep_alive_closed(edge: ServiceProcess) -> None:
    with _connect(edge.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        status, _ = _read_answer(sock)
    assert status == 408
    with _connect(edge.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _ = _read_answer(sock)
        assert status == 200
        # Keep-alive, then idle: the server closes the connection (recv returns b"").
        while sock.recv(65536):
            pass


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("first_name", "Ada\x00"),
        ("last_name", "Love\x07lace"),
        ("message", "call me\x00now"),
        ("email", "ada@example.com\x1b"),
        ("vendor_lead_id", "v-\x00"),
    ],
)
def test_control_characters_in_a_field_are_a_400_naming_it(harness: Harness, field: str, value: str) -> None:
    before = _leads(harness)
    body = {"phone": "+12125550143", "vendor_lead_id": uuid.uuid4().hex, field: value}
    answer = httpx.post(
        f"{harness.url}/v1/leads", json=body, headers={"Authorization": f"Bearer {harness.api_keys[T]}"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field
    assert value not in answer.text
    assert _leads(harness) == before


def test_control_characters_in_a_webhook_custom_field_are_refused(harness: Harness) -> None:
    from services.gateway.tests.gateway_vendors import ZAPIER_SECRET

    before = _leads(harness)
    answer = httpx.post(
        f"{harness.url}/v1/webhooks/{T}/zapier",
        json={"Lead Phone": "+12125550143", "Zap Run": uuid.uuid4().hex, "notes\x00": "x"},
        headers={"X-Leadflow-Secret": ZAPIER_SECRET},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == "notes?"
    assert _leads(harness) == before


def test_tabs_and_line_breaks_stay_allowed_in_free_text(harness: Harness) -> None:
    body = {"phone": "+12125550143", "vendor_lead_id": uuid.uuid4().hex, "message": "line one\r\n\tline two"}
    answer = httpx.post(
        f"{harness.url}/v1/leads", json=body, headers={"Authorization": f"Bearer {harness.api_keys[T]}"}
    )
    assert answer.status_code == 202, answer.text

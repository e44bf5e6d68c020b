"""Leads that arrive together share one EvaluateBatch and one SubmitLeads call, and each sender
still gets its own answer; a sender that hangs up mid-flight leaves a whole lead or none."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from leadflow.v1 import tenants_pb2
from leadflow_core.testing import ServiceProcess
from services.gateway.tests.harness import SECRETS, Harness, all_sources_spec


@pytest.fixture(scope="module")
def slow_batches(harness: Harness) -> Iterator[ServiceProcess]:
    """A gateway whose batches wait 300 ms: concurrent requests surely share one."""
    proc = harness.start_gateway("gateway-batches", {"LEADFLOW_GATEWAY_BATCH_DELAY_MS": "300"})
    yield proc
    proc.stop()


def _tenant(harness: Harness) -> tuple[str, str]:
    name = f"batch-{uuid.uuid4().hex[:8]}"
    return name, harness.apply(name, all_sources_spec(), SECRETS)


def test_each_lead_of_a_shared_batch_gets_its_own_answer(
    harness: Harness, slow_batches: ServiceProcess
) -> None:
    tenant, key = _tenant(harness)
    headers = {"Authorization": f"Bearer {key}"}
    bodies = [
        ({"phone": "2125550141", "full_name": "A"}, {"Idempotency-Key": "same"}),
        ({"phone": "2125550141", "full_name": "A"}, {"Idempotency-Key": "same"}),  # duplicate of the first
        ({"phone": "+1555", "full_name": "Bad"}, {}),  # not a dialable number: 400, alone
        ({"phone": "2125550142", "full_name": "B"}, {}),
    ]

    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{slow_batches.port}", timeout=30) as http:
            return list(
                await asyncio.gather(
                    *(http.post("/v1/leads", json=b, headers={**headers, **h}) for b, h in bodies)
                )
            )

    first, dup, bad, other = asyncio.run(send())
    assert sorted([first.status_code, dup.status_code]) == [200, 202], slow_batches.tail(20)
    assert first.json()["lead_id"] == dup.json()["lead_id"]
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "phone"
    assert other.status_code == 202
    assert harness.rows(tenant)["dispatcher_leads"] == 2  # the duplicate collapsed, the bad one left nothing


def _key_checks(harness: Harness) -> float:
    """AuthenticateApiKeys calls the batching gateway has made (its dependency histogram)."""
    port = (harness.workdir / "gateway-batches.metrics.port").read_text()
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith('leadflow_gateway_dependency_seconds_count{call="authenticate"}'):
            return float(line.split()[-1])
    return 0.0


def test_concurrent_requests_share_a_key_check_and_each_key_is_judged_alone(
    harness: Harness, slow_batches: ServiceProcess
) -> None:
    tenant, key = _tenant(harness)
    _, other_key = _tenant(harness)
    admin = harness.admin()
    old = admin.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=tenant, key_name="old"))
    admin.RevokeApiKey(tenants_pb2.RevokeApiKeyRequest(tenant=tenant, key_id=old.key_id))
    keys = [key, old.api_key, "lf_00000000_" + "x" * 32, other_key, key]
    before = _key_checks(harness)

    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{slow_batches.port}", timeout=30) as http:
            return list(
                await asyncio.gather(
                    *(
                        http.post(
                            "/v1/leads",
                            json={"phone": f"21255501{50 + i}", "full_name": f"K{i}"},
                            headers={"Authorization": f"Bearer {k}"},
                        )
                        for i, k in enumerate(keys)
                    )
                )
            )

    answers = asyncio.run(send())
    assert [a.status_code for a in answers] == [202, 401, 401, 202, 202], slow_batches.tail(20)
    # Five requests, their keys checked together (a batch waits 300 ms here): one call, two at
    # most should a request be late for the first.
    assert 1 <= _key_checks(harness) - before <= 2
    assert harness.rows(tenant)["dispatcher_leads"] == 2


def test_a_sender_that_hangs_up_leaves_a_whole_lead_or_none(
    harness: Harness, slow_batches: ServiceProcess
) -> None:
    tenant, key = _tenant(harness)
    body = b'{"phone": "2125550143", "full_name": "Gone"}'
    request = (
        f"POST /v1/leads HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Idempotency-Key: gone-1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", slow_batches.port), timeout=10) as sock:
        sock.sendall(request)
    # Closed before any answer: whether the gateway had read the body or not, and however the
    # sender's retry interleaves with the abandoned request, one whole lead results.
    retry = httpx.post(
        f"http://127.0.0.1:{slow_batches.port}/v1/leads",
        content=body,
        headers={
            "Authorization": f"Bearer {key}",
            "Idempotency-Key": "gone-1",
            "Content-Type": "application/json",
        },
        timeout=30,
    )
    assert retry.status_code in (200, 202)  # 200: the abandoned request had stored it
    rows = harness.rows(tenant)
    assert rows["dispatcher_leads"] == 1
    assert rows["dispatcher_events"] >= 1
    assert harness.jobs(tenant, retry.json()["lead_id"]) >= 1

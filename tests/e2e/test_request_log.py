"""The inbound request log and replay against the whole mesh: every intake request is kept without
its secrets, listed by source, status and time, and a replay runs the stored request through the
normal route again — without the sender check (it was verified at intake, even after the secret
has been rotated) — and yields the same lead, once."""

from __future__ import annotations

import socket
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from leadflow.v1 import admin_pb2, admin_pb2_grpc, inbound_pb2, tenants_pb2
from leadflow_core.db import normalise_url
from leadflow_core.tenant_spec import TenantSpec, to_proto
from leadflow_core.testing import wait_for
from tests.e2e.mesh import Mesh, running_mesh
from tests.e2e.scenario import clock_env, lead_body, tenant_secrets, tenant_spec

pytestmark = pytest.mark.e2e

TENANT = "rlog-acme"
OTHER = "rlog-beta"
FORM_KEY = "rlog-form-key-9f3a"
ZAP_SECRET = "rlog-zap-secret-77c1"
ACTOR: tuple[tuple[str, str | bytes], ...] = (("x-leadflow-actor", "ops-alice"),)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spec() -> dict[str, object]:
    spec = tenant_spec()
    spec["sources"] = {**spec["sources"], "zapier": {"secretRef": {"name": "zapier"}}}
    return spec


def _secrets(zap_secret: str) -> dict[str, dict[str, str]]:
    return {**tenant_secrets(FORM_KEY, "rlog-calls-token"), "zapier": {"token": zap_secret}}


@pytest.fixture(scope="module")
def mesh(database_url: str, redis_url: str, redis_prefix: str) -> Iterator[Mesh]:
    gateway_port = _free_port()
    with (
        tempfile.TemporaryDirectory(prefix="leadflow-rlog-") as tmp,
        running_mesh(
            database_url,
            redis_url,
            redis_prefix + "rlog:",
            Path(tmp),
            {
                **clock_env(),
                "LEADFLOW_GATEWAY_ADDR": f"127.0.0.1:{gateway_port}",
            },
        ) as m,
    ):
        m.apply_tenant(TENANT, _spec(), _secrets(ZAP_SECRET))
        m.apply_tenant(OTHER, tenant_spec(), tenant_secrets("rlog-other-form", "rlog-other-token"))
        yield m


@pytest.fixture(scope="module")
def admin(mesh: Mesh) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(mesh._channel("dispatcher"))


@pytest.fixture(scope="module")
def db(mesh: Mesh) -> Iterator[Engine]:
    engine = create_engine(normalise_url(mesh.database_url))
    yield engine
    engine.dispose()


def logged(
    admin: admin_pb2_grpc.AdminServiceStub, predicate_id: str, tenant: str = TENANT
) -> inbound_pb2.InboundRequest:
    """The logged request whose request id is `predicate_id` (records arrive in batches)."""

    def find() -> inbound_pb2.InboundRequest | None:
        reply = admin.ListRequests(admin_pb2.ListRequestsRequest(tenant=tenant, limit=1000))
        return next((r for r in reply.requests if r.request_id == predicate_id), None)

    found = wait_for(find, timeout=30, what=f"request {predicate_id} in the log")
    assert found is not None
    return found


def post_zapier(mesh: Mesh, body: dict[str, object], secret: str, rid: str) -> httpx.Response:
    return httpx.post(
        f"{mesh.gateway_url}/v1/webhooks/{TENANT}/zapier",
        json=body,
        headers={"X-Leadflow-Secret": secret, "X-Request-Id": rid},
        timeout=30,
    )


def leads_with_key(db: Engine, key: str) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text("SELECT COUNT(*) FROM dispatcher_leads WHERE tenant = :t AND idempotency_key = :k"),
                {"t": TENANT, "k": key},
            ).scalar_one()
        )


def test_the_log_keeps_no_secret_and_filters_by_source_status_and_time(
    mesh: Mesh, admin: admin_pb2_grpc.AdminServiceStub
) -> None:
    api_key = mesh.api_keys[TENANT]
    rid_api, rid_form, rid_zap, rid_bad = (f"rlog-{uuid.uuid4().hex[:12]}" for _ in range(4))
    resp = httpx.post(
        f"{mesh.gateway_url}/v1/leads",
        json=lead_body(1, tag="sec"),
        headers={
            "Authorization": f"Bearer {api_key}",
            "Cookie": "session=cookie-value-5d1e",
            "Idempotency-Key": f"idem-{rid_api}",
            "X-Request-Id": rid_api,
        },
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    api_lead = resp.json()["lead_id"]
    form = {**lead_body(2, tag="sec"), "form_key": FORM_KEY}
    resp = httpx.post(
        f"{mesh.gateway_url}/v1/webhooks/{TENANT}/form", json=form, headers={"X-Request-Id": rid_form}
    )
    assert resp.status_code == 202, resp.text
    assert post_zapier(mesh, lead_body(3, tag="sec"), ZAP_SECRET, rid_zap).status_code == 202
    assert post_zapier(mesh, lead_body(4, tag="sec"), "wrong-secret-0b2c", rid_bad).status_code == 401

    records = [logged(admin, rid) for rid in (rid_api, rid_form, rid_zap, rid_bad)]
    for record in records:
        kept = record.SerializeToString()
        for secret in (api_key, FORM_KEY, ZAP_SECRET, "wrong-secret-0b2c", "cookie-value-5d1e"):
            assert secret.encode() not in kept, f"{secret} kept in {record.source} request"
        assert not {"authorization", "cookie", "x-leadflow-secret"} & set(record.headers)
    api, form_rec, zap, bad = records
    assert (api.source, api.status, api.verified) == ("api", 202, True)
    assert api.headers["idempotency-key"] == f"idem-{rid_api}"
    assert list(api.lead_ids) == [api_lead]
    assert b'"form_key": "[redacted]"' in form_rec.body
    assert form_rec.verified
    assert (zap.source, zap.status, zap.verified, len(zap.lead_ids)) == ("zapier", 202, True, 1)
    assert (bad.status, bad.verified, bad.error_code, list(bad.lead_ids)) == (
        401,
        False,
        "unauthenticated",
        [],
    )

    by_status = admin.ListRequests(admin_pb2.ListRequestsRequest(tenant=TENANT, source="zapier", status=401))
    assert [r.request_id for r in by_status.requests if r.request_id in (rid_zap, rid_bad)] == [rid_bad]
    assert all(r.status == 401 and r.source == "zapier" for r in by_status.requests)
    future = Timestamp()
    future.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    assert not admin.ListRequests(admin_pb2.ListRequestsRequest(tenant=TENANT, since=future)).requests
    # Tenant isolation: the other tenant's log does not show these.
    other = admin.ListRequests(admin_pb2.ListRequestsRequest(tenant=OTHER, limit=1000))
    assert not {r.request_id for r in other.requests} & {rid_api, rid_form, rid_zap, rid_bad}


def test_replay_yields_the_same_lead_once_and_is_logged_as_a_replay(
    mesh: Mesh, admin: admin_pb2_grpc.AdminServiceStub, db: Engine
) -> None:
    rid = f"rlog-{uuid.uuid4().hex[:12]}"
    key = f"idem-{rid}"
    resp = httpx.post(
        f"{mesh.gateway_url}/v1/leads",
        json=lead_body(10, tag="replay"),
        headers={
            "Authorization": f"Bearer {mesh.api_keys[TENANT]}",
            "Idempotency-Key": key,
            "X-Request-Id": rid,
        },
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    lead_id = resp.json()["lead_id"]
    original = logged(admin, rid)

    for _ in range(2):
        reply = admin.ReplayRequests(
            admin_pb2.ReplayRequestsRequest(
                tenant=TENANT, request_log_id=original.request_log_id, reason="dispatcher was down"
            ),
            metadata=ACTOR,
        )
        (outcome,) = reply.outcomes
        assert outcome.error == ""
        # Idempotency still applies: the stored lead answers (200, duplicate), nothing new.
        assert (outcome.status, list(outcome.lead_ids)) == (200, [lead_id])
    assert leads_with_key(db, key) == 1

    def replays() -> list[inbound_pb2.InboundRequest]:
        listed = admin.ListRequests(admin_pb2.ListRequestsRequest(tenant=TENANT, source="api", limit=1000))
        return [r for r in listed.requests if r.replay_of == original.request_log_id]

    wait_for(lambda: len(replays()) == 2, timeout=30, what="both replays in the log")
    assert all(r.verified and r.status == 200 and list(r.lead_ids) == [lead_id] for r in replays())
    audit = admin.ListAdminAudit(admin_pb2.ListAdminAuditRequest(tenant=TENANT, limit=50))
    assert any(e.action == "requests.replay" and e.reason == "dispatcher was down" for e in audit.entries)


def test_replay_skips_the_rotated_secret_but_never_an_unverified_request(
    mesh: Mesh, admin: admin_pb2_grpc.AdminServiceStub
) -> None:
    rid_ok, rid_bad = f"rlog-{uuid.uuid4().hex[:12]}", f"rlog-{uuid.uuid4().hex[:12]}"
    first = post_zapier(mesh, lead_body(20, tag="rot"), ZAP_SECRET, rid_ok)
    assert first.status_code == 202, first.text
    assert post_zapier(mesh, lead_body(21, tag="rot"), "not-the-secret", rid_bad).status_code == 401
    ok, bad = logged(admin, rid_ok), logged(admin, rid_bad)

    # The tenant rotates its Zapier secret: the logged request's header could not verify now.
    rotated = to_proto(TENANT, TenantSpec.model_validate(_spec()), _secrets("rlog-new-zap-secret"))
    mesh.tenant_admin().ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=rotated))
    wait_for(
        lambda: post_zapier(mesh, lead_body(22, tag="rot"), ZAP_SECRET, "rlog-probe").status_code == 401,
        timeout=30,
        what="the gateway to use the rotated secret",
    )

    reply = admin.ReplayRequests(
        admin_pb2.ReplayRequestsRequest(
            tenant=TENANT,
            filter=admin_pb2.ListRequestsRequest(source="zapier", limit=1000),
            reason="re-run zapier after the outage",
        ),
        metadata=ACTOR,
    )
    outcomes = {o.request_log_id: o for o in reply.outcomes}
    assert outcomes[ok.request_log_id].error == ""
    assert (outcomes[ok.request_log_id].status, list(outcomes[ok.request_log_id].lead_ids)) == (
        200,
        list(ok.lead_ids),
    )
    assert "not verified" in outcomes[bad.request_log_id].error
    assert not outcomes[bad.request_log_id].lead_ids


def test_a_grant_is_single_use_and_the_replay_route_refuses_without_one(mesh: Mesh) -> None:
    resp = httpx.post(f"{mesh.gateway_url}/v1/replays", timeout=30)
    assert resp.status_code == 401
    resp = httpx.post(
        f"{mesh.gateway_url}/v1/replays", headers={"X-Leadflow-Replay-Grant": "guessed-grant"}, timeout=30
    )
    assert resp.status_code == 401


def test_cli_lists_and_replays_what_the_service_answers(
    mesh: Mesh,
    admin: admin_pb2_grpc.AdminServiceStub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from google.protobuf.json_format import MessageToDict

    from leadflow_cli.__main__ import main

    monkeypatch.setenv("LEADFLOW_DISPATCHER_ADDR", mesh.processes["dispatcher"].addr)
    monkeypatch.setenv("LEADFLOW_ACTOR", "cli-bob")
    rid = f"rlog-{uuid.uuid4().hex[:12]}"
    resp = httpx.post(
        f"{mesh.gateway_url}/v1/leads",
        json=lead_body(30, tag="cli"),
        headers={"Authorization": f"Bearer {mesh.api_keys[TENANT]}", "X-Request-Id": rid},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    lead_id = resp.json()["lead_id"]
    record = logged(admin, rid)

    capsys.readouterr()
    assert main(["requests", "list", TENANT, "--source", "api", "--since", "1h", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["requests"]
    want = MessageToDict(
        admin.ListRequests(
            admin_pb2.ListRequestsRequest(tenant=TENANT, source="api", limit=50, without_body=True)
        ),
        always_print_fields_with_no_presence=True,
    )["requests"]
    assert [r["requestLogId"] for r in listed if r["requestId"] == rid] == [record.request_log_id]
    assert {r["requestLogId"] for r in listed} <= {r["requestLogId"] for r in want}

    assert main(["requests", "list", TENANT, "--source", "api"]) == 0
    row = next(
        line.split()
        for line in capsys.readouterr().out.splitlines()
        if line.startswith(record.request_log_id)
    )
    assert row[2:4] == ["api", "202"]
    assert row[-1] == lead_id

    # No Idempotency-Key and no sender id: the replay still finds the lead the request stored.
    assert main(["requests", "replay", TENANT, record.request_log_id, "--reason", "cli check"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(line.split() for line in lines if line.startswith(record.request_log_id)) == [
        record.request_log_id,
        "200",
        lead_id,
    ]

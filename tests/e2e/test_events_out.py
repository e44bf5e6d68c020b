"""Events out against the whole mesh: a tenant's endpoint receives lead.stored, lead.refused,
call.placed, call.completed and lead.dead_lettered, each signed per Standard Webhooks with the tenant's own
secret. The receiver answers 500 to every event's first attempt, so each is retried with the
same webhook-id and the delivery log shows two attempts. A tenant without endpoints gets none."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from leadflow.v1 import admin_pb2, admin_pb2_grpc, dispatcher_pb2
from leadflow_core.testing import wait_for
from leadflow_gateway.signatures import verify_standard_webhook
from tests.e2e.mesh import Mesh, running_mesh
from tests.e2e.scenario import clock_env, lead_body, tenant_secrets, tenant_spec

pytestmark = pytest.mark.e2e

TENANT = "events-acme"
QUIET = "events-quiet"
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_b3RoZXIta2V5LW5vdC10aGUtdGVuYW50cw=="


class Receiver:
    """A tenant's endpoint: records every request and answers 500 to each message's first try."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    first = all(h["webhook-id"] != headers.get("webhook-id") for h, _ in receiver.requests)
                    receiver.requests.append((headers, body))
                self.send_response(500 if first else 204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/leadflow"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def by_id(self) -> dict[str, list[tuple[dict[str, str], bytes]]]:
        out: dict[str, list[tuple[dict[str, str], bytes]]] = {}
        with self.lock:
            for headers, body in self.requests:
                out.setdefault(headers["webhook-id"], []).append((headers, body))
        return out


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mesh(database_url: str, redis_url: str, redis_prefix: str, receiver: Receiver) -> Iterator[Mesh]:
    with (
        tempfile.TemporaryDirectory(prefix="leadflow-events-") as tmp,
        running_mesh(
            database_url,
            redis_url,
            redis_prefix + "events:",
            Path(tmp),
            {**clock_env(), "LEADFLOW_EVENT_MIN_BACKOFF_SECONDS": "0.5"},
        ) as m,
    ):
        spec = tenant_spec(
            eventEndpoints={
                "ops": {
                    "url": receiver.url,
                    "events": [
                        "lead.stored",
                        "lead.refused",
                        "call.placed",
                        "call.completed",
                        "lead.dead_lettered",
                    ],
                    "secretRef": {"name": "hooks", "key": "signing"},
                }
            }
        )
        m.apply_tenant(TENANT, spec, {**tenant_secrets(), "provider:events.ops": {"secret": SIGNING_SECRET}})
        m.apply_tenant(QUIET, tenant_spec(), tenant_secrets("quiet-form", "quiet-token"))
        yield m


@pytest.fixture(scope="module")
def admin(mesh: Mesh) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(mesh._channel("dispatcher"))


def post(mesh: Mesh, tenant: str, body: dict[str, object]) -> str:
    resp = httpx.post(
        f"{mesh.gateway_url}/v1/leads",
        json=body,
        headers={"Authorization": f"Bearer {mesh.api_keys[tenant]}"},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["lead_id"])


def deliveries(admin: admin_pb2_grpc.AdminServiceStub, tenant: str) -> list[admin_pb2.EventDelivery]:
    reply = admin.ListEventDeliveries(admin_pb2.ListEventDeliveriesRequest(tenant=tenant, limit=1000))
    return list(reply.deliveries)


def test_events_reach_the_endpoint_signed_and_retried_with_their_delivery_log(
    mesh: Mesh, admin: admin_pb2_grpc.AdminServiceStub, receiver: Receiver
) -> None:
    dialed = post(mesh, TENANT, lead_body(0, tag="events"))
    refused = post(mesh, TENANT, lead_body(1, tag="events", consent=False))
    mesh.dispatcher().RecordDeadLetter(
        dispatcher_pb2.DeadLetter(tenant=TENANT, queue="crm_sync", lead_id=refused, error_class="validation")
    )
    quiet = post(mesh, QUIET, lead_body(2, tag="events"))

    wanted = {
        ("lead.stored", dialed),
        ("lead.stored", refused),
        ("lead.refused", refused),
        ("lead.dead_lettered", refused),
        ("call.placed", dialed),
        ("call.completed", dialed),
    }

    def all_delivered() -> list[admin_pb2.EventDelivery] | None:
        ds = deliveries(admin, TENANT)
        got = {(d.event_type, d.lead_id) for d in ds if d.state == "delivered"}
        return ds if wanted <= got else None

    try:
        log = wait_for(all_delivered, timeout=180, what="every event delivered")
    except TimeoutError:
        print(
            mesh.logs(),
            [(d.event_type, d.state, d.attempts, d.last_error) for d in deliveries(admin, TENANT)],
        )
        raise
    assert log is not None
    # Only what the tenant subscribed to, once per cause: the dial lead was never refused.
    assert sorted((d.event_type, d.lead_id) for d in log) == sorted(wanted)
    received = receiver.by_id()
    now = int(time.time())
    for d in log:
        # The delivery log: first attempt refused with 500, the retry delivered.
        assert (d.state, d.attempts, d.last_status, d.last_error) == ("delivered", 2, 204, "")
        assert d.HasField("delivered_at")
        assert not d.HasField("next_at")
        tries = received[d.id]
        assert len(tries) == 2, "one message id for both attempts, so a receiver can drop repeats"
        for headers, body in tries:
            # Checked with the tenant's secret by the gateway's own Standard Webhooks verifier.
            assert verify_standard_webhook([SIGNING_SECRET], headers, body, now, 300)
            assert not verify_standard_webhook([OTHER_SECRET], headers, body, now, 300)
            event = json.loads(body)
            assert event["type"] == d.event_type
            assert event["data"]["tenant"] == TENANT
            assert event["data"]["lead_id"] == d.lead_id
            assert json.loads(d.payload_json) == event
    placed = next(d for d in log if d.event_type == "call.placed")
    completed = next(d for d in log if d.event_type == "call.completed")
    call_id = json.loads(placed.payload_json)["data"]["call_id"]
    assert call_id
    assert json.loads(completed.payload_json)["data"]["call_id"] == call_id
    assert json.loads(completed.payload_json)["data"]["status"] in {
        "completed",
        "busy",
        "no-answer",
        "failed",
    }

    # A tenant without endpoints costs no rows, and its events never reach another's endpoint.
    assert deliveries(admin, QUIET) == []
    assert all(quiet not in body.decode() for tries in received.values() for _, body in tries)
    only_failed = admin.ListEventDeliveries(
        admin_pb2.ListEventDeliveriesRequest(tenant=TENANT, state="failed")
    )
    assert list(only_failed.deliveries) == []
    stored = admin.ListEventDeliveries(
        admin_pb2.ListEventDeliveriesRequest(tenant=TENANT, event_type="lead.stored", endpoint="ops")
    )
    assert {d.lead_id for d in stored.deliveries} == {dialed, refused}

"""A STOP text that arrives while a lead's dial is queued stops that call: the whole mesh (gateway,
compliance, dispatcher, workers with the dial simulator) on real PostgreSQL and Redis."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from leadflow.v1 import dispatcher_pb2
from leadflow_core.db import normalise_url
from leadflow_core.testing import wait_for
from leadflow_gateway.signatures import twilio_signature
from tests.e2e.mesh import Mesh, running_mesh
from tests.e2e.scenario import clock_env, lead_body, tenant_secrets, tenant_spec

pytestmark = pytest.mark.e2e

TENANT = "e2e-stop"
TOKEN = "stop-token"
# Long enough for the STOP text to arrive while the dial job waits.
DELAY = 20


@pytest.fixture(scope="module")
def mesh(database_url: str, redis_url: str, redis_prefix: str) -> Iterator[Mesh]:
    spec = tenant_spec(
        policy={
            "defaultRegion": "US",
            "dialDelaySeconds": dict.fromkeys(("emergency", "high", "medium", "low"), DELAY),
        },
        sources={"api": {}, "calls": {"secretRef": {"name": "calls"}}, "sms": {"secretRef": {"name": "sms"}}},
    )
    with (
        tempfile.TemporaryDirectory(prefix="leadflow-e2e-stop-") as tmp,
        running_mesh(database_url, redis_url, redis_prefix + "e2e-stop:", Path(tmp), clock_env()) as m,
    ):
        m.apply_tenant(TENANT, spec, {**tenant_secrets(auth_token=TOKEN), "sms": {"auth_token": TOKEN}})
        yield m


@pytest.fixture(scope="module")
def db(mesh: Mesh) -> Iterator[Engine]:
    engine = create_engine(normalise_url(mesh.database_url))
    yield engine
    engine.dispose()


def kinds(mesh: Mesh, lead_id: str) -> list[str]:
    reply = mesh.dispatcher().GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=TENANT, lead_id=lead_id))
    return [e.kind for e in reply.events]


def calls(db: Engine, lead_id: str) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text("SELECT COUNT(*) FROM enrichment_simulated_calls WHERE tenant = :t AND lead_id = :l"),
                {"t": TENANT, "l": lead_id},
            ).scalar_one()
        )


def test_a_stop_text_while_the_dial_waits_stops_the_call(mesh: Mesh, db: Engine) -> None:
    phone = f"+1212555{uuid.uuid4().int % 10000:04d}"
    resp = httpx.post(
        f"{mesh.gateway_url}/v1/leads",
        json=lead_body(0, tag="stop", phone=phone),
        headers={"Authorization": f"Bearer {mesh.api_keys[TENANT]}"},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["dial"]["state"] == "scheduled", resp.text
    lead_id = resp.json()["lead_id"]

    url = f"{mesh.gateway_url}/v1/replies/{TENANT}/sms"
    params = [
        ("Body", "STOP"),
        ("From", phone),
        ("MessageSid", "SM" + uuid.uuid4().hex),
        ("To", "+12125550000"),
    ]
    stop = httpx.post(
        url,
        content=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(TOKEN, url, params),
        },
        timeout=30,
    )
    assert stop.status_code == 200, stop.text
    assert "<Message>" in stop.text

    # The dial job runs after its delay, asks compliance at the gate, and is refused.
    wait_for(
        lambda: "dial_blocked" in kinds(mesh, lead_id), timeout=DELAY + 90, what="the dial to be blocked"
    )
    assert calls(db, lead_id) == 0
    assert "dialed" not in kinds(mesh, lead_id)

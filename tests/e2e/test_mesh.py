"""One lead travels the whole way through real processes on real PostgreSQL and Redis."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from leadflow.v1 import compliance_pb2, decision_pb2, dispatcher_pb2, lead_pb2
from leadflow_core.db import normalise_url
from leadflow_core.testing import wait_for
from leadflow_core.timestamps import from_proto, to_proto
from tests.e2e.mesh import Mesh, running_mesh
from tests.e2e.scenario import NEW_YORK, NY_PHONE, clock_env, lead_body, tenant_secrets, tenant_spec

pytestmark = pytest.mark.e2e

TENANT = "e2e-acme"
OTHER = "e2e-other"
FORM_SECRETS = tenant_secrets("acme-form-key", "acme-token")
OTHER_SECRETS = tenant_secrets("other-form-key", "other-token")


@pytest.fixture(scope="module")
def mesh(database_url: str, redis_url: str, redis_prefix: str) -> Iterator[Mesh]:
    with (
        tempfile.TemporaryDirectory(prefix="leadflow-e2e-") as tmp,
        running_mesh(database_url, redis_url, redis_prefix + "e2e:", Path(tmp), clock_env()) as m,
    ):
        m.apply_tenant(TENANT, tenant_spec(), FORM_SECRETS)
        m.apply_tenant(OTHER, tenant_spec(), OTHER_SECRETS)
        yield m


@pytest.fixture(scope="module")
def db(mesh: Mesh) -> Iterator[Engine]:
    engine = create_engine(normalise_url(mesh.database_url))
    yield engine
    engine.dispose()


def post(mesh: Mesh, tenant: str, body: dict[str, object], **headers: str) -> httpx.Response:
    key = mesh.api_keys[tenant]
    return httpx.post(
        f"{mesh.gateway_url}/v1/leads",
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=30,
    )


def simulated_calls(db: Engine, tenant: str, lead_id: str) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text("SELECT COUNT(*) FROM enrichment_simulated_calls WHERE tenant = :t AND lead_id = :l"),
                {"t": tenant, "l": lead_id},
            ).scalar_one()
        )


def timeline(mesh: Mesh, tenant: str, lead_id: str) -> list[str]:
    reply = mesh.dispatcher().GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=tenant, lead_id=lead_id))
    return [e.kind for e in reply.events]


def wait_dialed(mesh: Mesh, db: Engine, tenant: str, lead_id: str) -> None:
    try:
        wait_for(lambda: simulated_calls(db, tenant, lead_id) > 0, timeout=90, what=f"a call for {lead_id}")
        wait_for(
            lambda: "dialed" in timeline(mesh, tenant, lead_id), timeout=30, what="'dialed' in the timeline"
        )
    except TimeoutError:
        print(mesh.logs())
        raise


def test_a_lead_travels_from_webhook_to_dial(mesh: Mesh, db: Engine) -> None:
    resp = post(mesh, TENANT, lead_body(0, tag="whole-way"), **{"X-Request-Id": "e2e-whole-way-1"})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["duplicate"] is False
    assert body["dial"]["state"] == "scheduled"
    lead_id = body["lead_id"]

    wait_dialed(mesh, db, TENANT, lead_id)
    # Enrichment and CRM sync run beside the dial, not before it.
    wait_for(lambda: {"enriched", "synced"} <= set(timeline(mesh, TENANT, lead_id)), timeout=60, what="sync")
    kinds = timeline(mesh, TENANT, lead_id)
    for kind in ("received", "decided", "enriched", "synced", "dialing", "dialed"):
        assert kind in kinds, kinds
    assert kinds.index("received") < kinds.index("decided") < kinds.index("dialed")

    lead = mesh.dispatcher().GetLead(dispatcher_pb2.GetLeadRequest(tenant=TENANT, lead_id=lead_id))
    assert lead.lead.contact.phone.e164 == NY_PHONE
    assert lead.decision.action == decision_pb2.DIAL_ACTION_DIAL_NOW
    assert lead.lead.consent.granted

    # The enrichment reached the timeline with a score, and the local CRM holds the contact.
    reply = mesh.dispatcher().GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=TENANT, lead_id=lead_id))
    enriched = next(json.loads(e.detail_json) for e in reply.events if e.kind == "enriched")
    assert 0 <= int(enriched["fit_score"]) <= 100
    with db.connect() as conn:
        crm = conn.execute(
            text("SELECT fit_score FROM enrichment_crm_contacts WHERE tenant = :t AND lead_id = :l"),
            {"t": TENANT, "l": lead_id},
        ).all()
    assert len(crm) == 1

    # The request id followed the lead from the gateway into every service's logs, with no PII.
    logs = {name: p.logs() for name, p in mesh.processes.items()}
    for name in ("gateway", "compliance", "dispatcher", "workers"):
        assert "e2e-whole-way-1" in logs[name], f"request id missing from {name} logs"
        assert NY_PHONE not in logs[name], name
        assert "ada.whole-way.0@example.com" not in logs[name], name


def test_the_same_lead_twice_is_one_lead_and_one_call(mesh: Mesh, db: Engine) -> None:
    body = lead_body(1, tag="twice")
    first = post(mesh, TENANT, body)
    second = post(mesh, TENANT, body)
    assert first.status_code == 202, first.text
    assert second.status_code == 200, second.text
    assert second.json()["duplicate"] is True
    assert second.json()["lead_id"] == first.json()["lead_id"]
    lead_id = first.json()["lead_id"]
    wait_dialed(mesh, db, TENANT, lead_id)
    # A lead posted after the duplicate is dialed too: by then a second job would have run.
    later = post(mesh, TENANT, lead_body(2, tag="twice-after"))
    wait_dialed(mesh, db, TENANT, later.json()["lead_id"])
    assert simulated_calls(db, TENANT, lead_id) == 1
    assert timeline(mesh, TENANT, lead_id).count("received") == 1


def test_a_lead_without_consent_is_stored_and_synced_but_never_dialed(mesh: Mesh, db: Engine) -> None:
    resp = post(mesh, TENANT, lead_body(3, tag="no-consent", consent=False))
    assert resp.status_code == 202, resp.text
    assert resp.json()["dial"]["state"] == "blocked"
    reasons = resp.json()["dial"]["reasons"]
    assert any("consent" in r["rule_id"] for r in reasons)
    # Every reason names the law it rests on.
    assert all(r["statute"] for r in reasons), reasons
    lead_id = resp.json()["lead_id"]
    wait_for(lambda: "synced" in timeline(mesh, TENANT, lead_id), timeout=60, what="sync of the lead")
    marker = post(mesh, TENANT, lead_body(4, tag="no-consent-after"))
    wait_dialed(mesh, db, TENANT, marker.json()["lead_id"])
    assert simulated_calls(db, TENANT, lead_id) == 0
    assert "dialed" not in timeline(mesh, TENANT, lead_id)


def _lead_rows(db: Engine, tenant: str) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text("SELECT COUNT(*) FROM dispatcher_leads WHERE tenant = :t"), {"t": tenant}
            ).scalar_one()
        )


def test_a_malformed_body_gets_400_and_leaves_nothing(mesh: Mesh, db: Engine) -> None:
    before = _lead_rows(db, TENANT)
    resp = post(mesh, TENANT, lead_body(5, tag="bad", phone="not a phone number"))
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["field"] == "phone"
    assert error["message"]
    bad_json = httpx.post(
        f"{mesh.gateway_url}/v1/leads",
        content=b'{"first_name": "Ada", ',
        headers={"Authorization": f"Bearer {mesh.api_keys[TENANT]}", "Content-Type": "application/json"},
    )
    assert bad_json.status_code == 400
    assert _lead_rows(db, TENANT) == before


def test_a_lead_at_22_local_is_deferred_to_8_next_morning(mesh: Mesh) -> None:
    day = datetime.now(NEW_YORK).date() + timedelta(days=7)
    while day.weekday() != 2:  # a Wednesday, so no weekend rule is involved
        day += timedelta(days=1)
    at = datetime(day.year, day.month, day.day, 22, 0, tzinfo=NEW_YORK)
    lead = lead_pb2.Lead(
        tenant=TENANT,
        source=lead_pb2.SOURCE_API,
        contact=lead_pb2.Contact(
            first_name="Ada", phone=lead_pb2.Phone(e164=NY_PHONE, raw=NY_PHONE, region="US")
        ),
        consent=lead_pb2.ConsentEvidence(
            granted=True,
            disclosure_text="I agree to autodialed calls",
            consented_at=to_proto(at - timedelta(days=1)),
            seller=TENANT,
            form_submission_id="sub-night",
        ),
        urgency=lead_pb2.URGENCY_HIGH,
    )
    reply = mesh.compliance().Evaluate(
        compliance_pb2.EvaluateRequest(
            lead=lead, evaluate_at=to_proto(at), purpose=compliance_pb2.EVALUATION_PURPOSE_WHAT_IF
        )
    )
    decision = reply.decision
    assert decision.action == decision_pb2.DIAL_ACTION_DEFER
    not_before = from_proto(decision.not_before)
    assert not_before is not None
    assert not_before.astimezone(NEW_YORK) == datetime(
        day.year, day.month, day.day, 8, 0, tzinfo=NEW_YORK
    ) + timedelta(days=1)
    assert any(r.rule_id.startswith("federal.") and r.statute for r in decision.reasons)


def test_one_tenants_key_cannot_touch_another_tenants_leads(mesh: Mesh) -> None:
    resp = post(mesh, TENANT, lead_body(6, tag="isolation"))
    assert resp.status_code == 202
    lead_id = resp.json()["lead_id"]

    # The other tenant cannot read it over gRPC ...
    with pytest.raises(grpc.RpcError) as err:
        mesh.dispatcher().GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=OTHER, lead_id=lead_id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # ... nor over HTTP with its own API key.
    other_key = mesh.api_keys[OTHER]
    http = httpx.get(
        f"{mesh.gateway_url}/v1/leads/{lead_id}/timeline", headers={"Authorization": f"Bearer {other_key}"}
    )
    assert http.status_code == 404
    own = httpx.get(
        f"{mesh.gateway_url}/v1/leads/{lead_id}/timeline",
        headers={"Authorization": f"Bearer {mesh.api_keys[TENANT]}"},
    )
    assert own.status_code == 200
    assert own.json()["events"]

    # A lead posted with the other tenant's key lands with the other tenant, whatever the body says.
    crossed = post(mesh, OTHER, {**lead_body(7, tag="isolation-cross"), "tenant": TENANT})
    assert crossed.status_code in (202, 400)
    if crossed.status_code == 202:
        with pytest.raises(grpc.RpcError):
            mesh.dispatcher().GetLead(
                dispatcher_pb2.GetLeadRequest(tenant=TENANT, lead_id=crossed.json()["lead_id"])
            )
    # The other tenant's form key does not open this tenant's form webhook.
    form = httpx.post(
        f"{mesh.gateway_url}/v1/webhooks/{TENANT}/form",
        data={"form_key": "other-form-key", "first_name": "Eve", "phone": "+12125550199"},
    )
    assert form.status_code == 401
    bad_key = httpx.post(
        f"{mesh.gateway_url}/v1/leads", json=lead_body(8), headers={"Authorization": "Bearer not-a-key"}
    )
    assert bad_key.status_code == 401

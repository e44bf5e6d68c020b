"""The same flow on the embedded SQLite default that `make run` uses."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from leadflow.v1 import dispatcher_pb2
from leadflow_core.migrations import SERVICES_WITH_SCHEMA, upgrade
from leadflow_core.testing import wait_for
from tests.e2e.mesh import running_mesh
from tests.e2e.scenario import clock_env, lead_body, tenant_secrets, tenant_spec

pytestmark = pytest.mark.e2e


def test_a_lead_is_dialed_on_the_sqlite_default(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    url = f"sqlite:///{tmp_path / 'var' / 'leadflow.db'}"
    for service in SERVICES_WITH_SCHEMA:
        upgrade(service, url)
    with running_mesh(url, redis_url, redis_prefix + "sqlite:", tmp_path, clock_env()) as mesh:
        key = mesh.apply_tenant("sqlite-acme", tenant_spec(), tenant_secrets())
        resp = httpx.post(
            f"{mesh.gateway_url}/v1/leads",
            json=lead_body(0, tag="sqlite"),
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert resp.status_code == 202, resp.text
        lead_id = resp.json()["lead_id"]
        engine = create_engine(url)

        def calls() -> int:
            with engine.connect() as conn:
                return int(
                    conn.execute(
                        text("SELECT COUNT(*) FROM enrichment_simulated_calls WHERE lead_id = :l"),
                        {"l": lead_id},
                    ).scalar_one()
                )

        try:
            wait_for(lambda: calls() == 1, timeout=90, what="the simulated call")
        except TimeoutError:
            print(mesh.logs())
            raise

        def kinds() -> list[str]:
            reply = mesh.dispatcher().GetTimeline(
                dispatcher_pb2.GetTimelineRequest(tenant="sqlite-acme", lead_id=lead_id)
            )
            return [e.kind for e in reply.events]

        # The call row can land a moment before the dispatcher records it, and sync runs beside it.
        wait_for(lambda: {"dialed", "synced", "enriched"} <= set(kinds()), timeout=60, what="the timeline")
        for kind in ("received", "decided", "enriched", "synced", "dialed"):
            assert kind in kinds(), kinds()
        engine.dispose()

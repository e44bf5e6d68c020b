"""The daily budget on the worker path: reservations priced by the tenant's rate card stop
dialing when the budget is spent, and the leads left wait for the tenant's own midnight."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from leadflow.v1 import dispatcher_pb2, tenants_pb2
from leadflow_core.testing import wait_for
from leadflow_core.timestamps import from_proto
from tests.e2e.mesh import Mesh, running_mesh
from tests.e2e.scenario import clock_env, lead_body, tenant_secrets, tenant_spec, weekday_morning_new_york

pytestmark = pytest.mark.e2e

# The services' clock: a weekday, 11:00 in New York, 08:00 in Los Angeles (the tenant's zone).
MORNING = weekday_morning_new_york()
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
TENANT_MIDNIGHT = datetime.combine(
    MORNING.astimezone(LOS_ANGELES).date() + timedelta(days=1), time(0), LOS_ANGELES
)


@pytest.fixture(scope="module")
def mesh(database_url: str, redis_url: str, redis_prefix: str) -> Iterator[Mesh]:
    with (
        tempfile.TemporaryDirectory(prefix="leadflow-budget-") as tmp,
        running_mesh(database_url, redis_url, redis_prefix + "b:", Path(tmp), clock_env(MORNING)) as m,
    ):
        yield m


def test_dialing_stops_at_the_budget_and_waits_for_the_tenants_midnight(mesh: Mesh) -> None:
    tenant = f"b-{uuid.uuid4().hex[:8]}"
    # Each call is estimated at 1 minute at 0.0140: three fit in 0.05, a fourth would not.
    spec = tenant_spec(
        timezone="America/Los_Angeles",
        budget={"dailyUsd": "0.05", "rateCard": {"defaultPerMinuteUsd": "0.0140", "estimateMinutes": 1}},
    )
    key = mesh.apply_tenant(tenant, spec, tenant_secrets())
    lead_ids = []
    for i in range(5):
        reply = httpx.post(
            f"{mesh.gateway_url}/v1/leads",
            json=lead_body(i + 1, tenant),
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert reply.status_code == 202, reply.text
        lead_ids.append(reply.json()["lead_id"])
    dispatcher = mesh.dispatcher()

    def settled() -> list[dispatcher_pb2.GetLeadResponse] | None:
        leads = [
            dispatcher.GetLead(dispatcher_pb2.GetLeadRequest(tenant=tenant, lead_id=i)) for i in lead_ids
        ]
        done = (dispatcher_pb2.DIAL_STATE_DIALED, dispatcher_pb2.DIAL_STATE_DEFERRED)
        return leads if all(lead.dial_state in done for lead in leads) else None

    leads = wait_for(settled, timeout=120, what="every lead dialed or deferred")
    dialed = [lead for lead in leads if lead.dial_state == dispatcher_pb2.DIAL_STATE_DIALED]
    deferred = [lead for lead in leads if lead.dial_state == dispatcher_pb2.DIAL_STATE_DEFERRED]
    assert (len(dialed), len(deferred)) == (3, 2)
    for lead in deferred:
        # Due when the tenant's day ends in Los Angeles, not at UTC midnight.
        due = from_proto(lead.dial_at)
        assert due is not None
        assert abs(due - TENANT_MIDNIGHT) < timedelta(seconds=5), due
    usage = mesh.tenant_admin().GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant)).usage
    assert usage.calls_today == 3

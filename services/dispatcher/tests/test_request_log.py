"""The inbound request log's store and RPCs on a real dispatcher and PostgreSQL: batched writes
(a batch sent twice is kept once), retention per tenant, single-use replay grants."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import create_engine

from leadflow.v1 import dispatcher_pb2, dispatcher_pb2_grpc, inbound_pb2
from leadflow_core.db import make_sessionmaker, normalise_url
from leadflow_core.testing import ServiceProcess
from leadflow_core.timestamps import to_proto
from leadflow_dispatcher.policies import PolicyView, TenantPolicies
from leadflow_dispatcher.request_log import RequestFilter
from leadflow_dispatcher.request_log_sweeper import RequestLogSweeper
from leadflow_dispatcher.store import NotFound, Store


@pytest.fixture(scope="module")
def store(database_url: str, dispatcher_proc: ServiceProcess) -> Iterator[Store]:
    engine = create_engine(normalise_url(database_url))
    yield Store(make_sessionmaker(engine), postgres=True)
    engine.dispose()


def record(
    tenant: str, age: timedelta, *, verified: bool = True, status: int = 202
) -> inbound_pb2.InboundRequest:
    return inbound_pb2.InboundRequest(
        request_log_id=uuid.uuid4().hex,
        tenant=tenant,
        source="api",
        method="POST",
        path="/v1/leads",
        headers={"content-type": "application/json"},
        body=b'{"first_name": "Ada"}',
        status=status,
        verified=verified,
        received_at=to_proto(datetime.now(UTC) - age),
    )


def ids(store: Store, tenant: str) -> set[str]:
    return {r.request_log_id for r in store.list_requests(RequestFilter(tenant=tenant, limit=1000))}


def test_a_batch_sent_twice_is_kept_once(
    stub: dispatcher_pb2_grpc.DispatcherServiceStub, store: Store, tenant: str
) -> None:
    batch = dispatcher_pb2.RecordRequestsRequest(requests=[record(tenant, timedelta()) for _ in range(3)])
    stub.RecordRequests(batch)
    stub.RecordRequests(batch)
    assert ids(store, tenant) == {r.request_log_id for r in batch.requests}


def test_the_sweeper_keeps_each_tenant_for_its_retention(
    stub: dispatcher_pb2_grpc.DispatcherServiceStub, store: Store
) -> None:
    short, default = f"t-{uuid.uuid4().hex[:10]}", f"t-{uuid.uuid4().hex[:10]}"
    rows = {
        (t, days): record(t, timedelta(days=days, minutes=1)) for t in (short, default) for days in (0, 2, 8)
    }
    stub.RecordRequests(dispatcher_pb2.RecordRequestsRequest(requests=list(rows.values())))
    deleted = store.sweep_requests(lambda t: 1 if t == short else 7)
    assert deleted >= 3
    assert ids(store, short) == {rows[(short, 0)].request_log_id}
    assert ids(store, default) == {rows[(default, 0)].request_log_id, rows[(default, 2)].request_log_id}
    # The sweeper's own pass: compliance is not running, so the fallback retention (7 days)
    # applies to both, and what is within it stays.
    policies = TenantPolicies("127.0.0.1:1", PolicyView(request_log_retention_days=7), 60)
    RequestLogSweeper(store, policies, 3600).sweep()
    assert ids(store, default) == {rows[(default, 0)].request_log_id, rows[(default, 2)].request_log_id}


def test_a_replay_grant_is_single_use_and_never_for_an_unverified_request(
    stub: dispatcher_pb2_grpc.DispatcherServiceStub, store: Store, tenant: str
) -> None:
    good, bad = record(tenant, timedelta()), record(tenant, timedelta(), verified=False, status=401)
    stub.RecordRequests(dispatcher_pb2.RecordRequestsRequest(requests=[good, bad]))
    granted = dict(store.grant_replays(RequestFilter(tenant=tenant), "", 60))
    grant = granted[good.request_log_id]
    assert isinstance(grant, str)
    assert not isinstance(granted[bad.request_log_id], str)
    claimed = stub.ClaimReplay(dispatcher_pb2.ClaimReplayRequest(grant=grant))
    assert (claimed.request_log_id, claimed.body) == (good.request_log_id, good.body)
    with pytest.raises(grpc.RpcError) as again:
        stub.ClaimReplay(dispatcher_pb2.ClaimReplayRequest(grant=grant))
    assert again.value.code() == grpc.StatusCode.NOT_FOUND
    # Another tenant's id is not found for this tenant.
    with pytest.raises(NotFound):
        store.grant_replays(RequestFilter(tenant="t-someone-else"), good.request_log_id, 60)


def test_a_lapsed_grant_is_refused(
    stub: dispatcher_pb2_grpc.DispatcherServiceStub, store: Store, tenant: str
) -> None:
    r = record(tenant, timedelta())
    stub.RecordRequests(dispatcher_pb2.RecordRequestsRequest(requests=[r]))
    ((_, grant),) = store.grant_replays(RequestFilter(tenant=tenant), r.request_log_id, -1)
    assert isinstance(grant, str)
    with pytest.raises(grpc.RpcError) as lapsed:
        stub.ClaimReplay(dispatcher_pb2.ClaimReplayRequest(grant=grant))
    assert lapsed.value.code() == grpc.StatusCode.NOT_FOUND

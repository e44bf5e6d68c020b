"""Urgent dials batch their hops apart from the bulk of the work."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dramatiq
import pytest

from leadflow.v1 import dispatcher_pb2
from leadflow_core.testing import wait_for
from leadflow_enrichment.context import WorkerContext, _Hops
from leadflow_enrichment.lanes import is_urgent, urgent_lane
from leadflow_enrichment.middleware import RequestContext
from leadflow_enrichment.settings import WorkerSettings


@pytest.mark.parametrize(
    ("queue", "urgent"),
    [
        ("dial.emergency", True),
        ("dial.high", True),
        ("dial.high.DQ", True),  # a delayed message is processed from the delay queue
        ("dial.medium", False),
        ("dial.low.DQ", False),
        ("enrich", False),
        ("crm_sync", False),
        ("call_status", False),
    ],
)
def test_urgent_queues(queue: str, urgent: bool) -> None:
    assert is_urgent(queue) is urgent


def test_the_middleware_binds_the_lane_for_the_job_only() -> None:
    middleware = RequestContext()
    broker: Any = None  # the middleware does not use it
    seen: list[bool] = []
    for queue in ("dial.emergency", "enrich"):
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue, actor_name="dial", args=("acme", "L1"), kwargs={}, options={}
        )
        middleware.before_process_message(broker, message)
        seen.append(urgent_lane.get())
        middleware.after_process_message(broker, message)
        seen.append(urgent_lane.get())
    assert seen == [True, False, False, False]


class _Dispatcher:
    """GetLeads answering each lead by id; `hold` keeps a call in flight until released."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.hold = hold
        self.calls: list[list[str]] = []

    def GetLeads(self, request: dispatcher_pb2.GetLeadsRequest) -> dispatcher_pb2.GetLeadsResponse:
        self.calls.append([r.lead_id for r in request.leads])
        if self.hold is not None:
            self.hold.wait(10)
        return dispatcher_pb2.GetLeadsResponse(
            items=[
                dispatcher_pb2.GetLeadsResponse.Item(
                    lead=dispatcher_pb2.GetLeadResponse(joined_lead_id=r.lead_id)
                )
                for r in request.leads
            ]
        )


def test_an_urgent_read_does_not_wait_behind_a_bulk_batch_in_flight() -> None:
    settings = WorkerSettings()
    release = threading.Event()
    bulk, urgent = _Dispatcher(hold=release), _Dispatcher()
    ctx: Any = WorkerContext.__new__(WorkerContext)  # only its lanes: no channels, no providers
    ctx._lanes = {False: _Hops(bulk, settings), True: _Hops(urgent, settings)}  # type: ignore[arg-type]

    def read(lead_id: str, lane: bool) -> str:
        token = urgent_lane.set(lane)
        try:
            return str(ctx.get_lead("acme", lead_id).joined_lead_id)
        finally:
            urgent_lane.reset(token)

    try:
        with ThreadPoolExecutor(4) as pool:
            held = pool.submit(read, "bulk-1", False)
            wait_for(lambda: bulk.calls == [["bulk-1"]], timeout=10, what="the bulk batch in flight")
            queued = pool.submit(read, "bulk-2", False)  # waits for the batch in flight
            # The urgent lane answers while the bulk batch is still out.
            assert pool.submit(read, "urgent-1", True).result(10) == "urgent-1"
            assert not held.done()
            assert not queued.done()
            release.set()
            assert held.result(10) == "bulk-1"
            assert queued.result(10) == "bulk-2"
    finally:
        release.set()
        for hops in ctx._lanes.values():
            hops.close()
    assert urgent.calls == [["urgent-1"]]
    assert bulk.calls == [["bulk-1"], ["bulk-2"]]

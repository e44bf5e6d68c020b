"""The workers' batch RPCs of DispatcherService: GetLeads, RecordEvents, StartDials, CompleteDials.

A mixin of `DispatcherServicer` (it uses the servicer's `store` and `settings`). Each item
answers for itself with an `ItemError` (NOT_FOUND, INVALID_ARGUMENT) instead of failing the
batch; a failure of the whole batch (the database) is the RPC's own status.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from leadflow.v1 import batch_pb2, compliance_pb2, decision_pb2, dispatcher_pb2
from leadflow_core import grpc_errors
from leadflow_core.logs import get_logger
from leadflow_core.request_context import current_request_id
from leadflow_core.timestamps import from_proto, to_proto, utcnow
from leadflow_dispatcher.attempts import ClaimResult
from leadflow_dispatcher.dial_batches import ClaimAsk, Dialed
from leadflow_dispatcher.policies import TenantPolicies
from leadflow_dispatcher.relay import Relay
from leadflow_dispatcher.repository import NotFound
from leadflow_dispatcher.settings import DispatcherSettings
from leadflow_dispatcher.store import Store
from leadflow_dispatcher.worker_reads import Report

MAX_BATCH = 1000
log = get_logger("leadflow.dispatcher.batches")


def _not_found(what: str, key: str) -> batch_pb2.ItemError:
    return batch_pb2.ItemError(code=grpc.StatusCode.NOT_FOUND.value[0], message=f"{what} {key} not found")


def _invalid(field: str, why: str) -> batch_pb2.ItemError:
    return batch_pb2.ItemError(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=f"{field}: {why}")


def _detail(raw: str) -> dict[str, Any] | None:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _error(code: grpc.StatusCode | int, message: str) -> batch_pb2.ItemError:
    value = code if isinstance(code, int) else code.value[0]
    return batch_pb2.ItemError(code=value, message=message[:500])


def _claim_reply(c: ClaimResult) -> dispatcher_pb2.ClaimDialAttemptResponse:
    reply = dispatcher_pb2.ClaimDialAttemptResponse(
        claimed=c.claimed,
        attempt_id=c.attempt_id,
        lead=c.lead,
        state=c.state,
        resumed=c.resumed,
        tries=c.tries,
        reconcile=c.reconcile,
        reservation_id=c.reservation_id,
    )
    if c.dialing_at is not None:
        reply.dialing_at.CopyFrom(to_proto(c.dialing_at))
    return reply


def reservation_key(c: ClaimResult) -> str:
    """One reservation per try of an attempt. A try proven not placed has its reservation
    released by a settle job that may run after the next try is gated: were both tries one
    reservation, that release would leave the next call without one. A redelivered claim of
    the same try still finds its own reservation."""
    return f"{c.attempt_id}/{c.tries}"


class WorkerBatchServicer:
    store: Store
    settings: DispatcherSettings
    relay: Relay
    policies: TenantPolicies

    def GetLeads(
        self, request: dispatcher_pb2.GetLeadsRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.GetLeadsResponse:
        if len(request.leads) > MAX_BATCH:
            grpc_errors.invalid_argument(context, "leads", f"at most {MAX_BATCH} per call")
        refs = [(r.tenant, r.lead_id) for r in request.leads]
        items = []
        for ref, found in zip(refs, self.store.get_leads(refs), strict=True):
            if isinstance(found, NotFound):
                items.append(dispatcher_pb2.GetLeadsResponse.Item(error=_not_found("lead", ref[1])))
            else:
                items.append(dispatcher_pb2.GetLeadsResponse.Item(lead=found))
        return dispatcher_pb2.GetLeadsResponse(items=items)

    def RecordEvents(
        self, request: dispatcher_pb2.RecordEventsRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.RecordEventsResponse:
        if len(request.events) > MAX_BATCH:
            grpc_errors.invalid_argument(context, "events", f"at most {MAX_BATCH} per call")
        errors: dict[int, batch_pb2.ItemError] = {}
        reports: list[Report] = []
        positions: list[int] = []
        for i, e in enumerate(request.events):
            detail = _detail(e.detail_json)
            if not (e.tenant and e.lead_id and e.kind):
                errors[i] = _invalid("tenant, lead_id, kind", "are required")
            elif detail is None:
                errors[i] = _invalid("detail_json", "must be a JSON object")
            else:
                positions.append(i)
                reports.append(
                    Report(
                        tenant=e.tenant,
                        lead_id=e.lead_id,
                        kind=e.kind,
                        detail=detail,
                        dedupe_key=e.dedupe_key,
                        request_id=e.request_id or current_request_id(),
                        next_attempt_at=from_proto(e.next_attempt_at),
                    )
                )
        results = self.store.record_events(reports, self.settings.job_lease_seconds) if reports else []
        for i, result in zip(positions, results, strict=True):
            if isinstance(result, NotFound):
                errors[i] = _not_found("lead", request.events[i].lead_id)
        recorded = dict(zip(positions, results, strict=True))
        return dispatcher_pb2.RecordEventsResponse(
            items=[
                dispatcher_pb2.RecordEventsResponse.Item(error=errors[i])
                if i in errors
                else dispatcher_pb2.RecordEventsResponse.Item(recorded=recorded[i] is True)
                for i in range(len(request.events))
            ]
        )

    def StartDials(
        self, request: dispatcher_pb2.StartDialsRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.StartDialsResponse:
        if len(request.attempts) > MAX_BATCH:
            grpc_errors.invalid_argument(context, "attempts", f"at most {MAX_BATCH} per call")
        asks = [
            ClaimAsk(a.tenant, a.lead_id, a.attempt or 1, a.request_id or current_request_id())
            for a in request.attempts
        ]
        items = [dispatcher_pb2.StartDialsResponse.Item() for _ in asks]
        claimed: list[tuple[int, ClaimResult]] = []
        for i, (ask, claim) in enumerate(
            zip(asks, self.store.claim_many(asks, self.settings.claim_stale_seconds), strict=True)
        ):
            if isinstance(claim, NotFound):
                items[i].error.CopyFrom(_not_found("lead", ask.lead_id))
                continue
            items[i].claim.CopyFrom(_claim_reply(claim))
            # A reconciling claim asks no gate: its worker looks the call up first.
            if claim.claimed and not claim.reconcile:
                claimed.append((i, claim))
        if claimed:
            self._gate(asks, claimed, items)
        return dispatcher_pb2.StartDialsResponse(items=items)

    def _gate(
        self,
        asks: list[ClaimAsk],
        claimed: list[tuple[int, ClaimResult]],
        items: list[dispatcher_pb2.StartDialsResponse.Item],
    ) -> None:
        """Compliance's final gate and reservation for every claimed attempt, in one call. A
        claim without an answer is released and answered with the error: never a decision."""
        at = to_proto(utcnow())
        try:
            reply = self.relay.compliance.ReserveCalls(
                compliance_pb2.ReserveCallsRequest(
                    calls=[
                        compliance_pb2.ReserveCallRequest(
                            lead=c.lead, attempt_id=reservation_key(c), evaluate_at=at
                        )
                        for _, c in claimed
                    ]
                ),
                timeout=self.settings.rpc_timeout_seconds,
            )
            answers = list(reply.items)
            if len(answers) != len(claimed):
                raise RuntimeError("compliance answered a different number of reservations")
        except (grpc.RpcError, RuntimeError) as err:
            code = err.code() if isinstance(err, grpc.RpcError) else grpc.StatusCode.INTERNAL
            self.store.release_claims(
                [(asks[i].tenant, c.attempt_id) for i, c in claimed], f"compliance: {code}"
            )
            for i, _ in claimed:
                items[i].error.CopyFrom(_error(code, f"compliance could not reserve: {code}"))
            return
        released: list[tuple[str, str]] = []
        reserved: list[tuple[int, str, str, str]] = []  # (index, tenant, attempt id, reservation id)
        for (i, claim), answer in zip(claimed, answers, strict=True):
            ask = asks[i]
            if answer.error_code:
                released.append((ask.tenant, claim.attempt_id))
                items[i].error.CopyFrom(_error(answer.error_code, answer.error_message))
                continue
            decision = answer.reply.decision
            items[i].decision.CopyFrom(decision)
            if decision.action == decision_pb2.DIAL_ACTION_DIAL_NOW:
                if answer.reply.reservation_id:
                    reserved.append((i, ask.tenant, claim.attempt_id, answer.reply.reservation_id))
                else:  # never place a call without a reservation
                    released.append((ask.tenant, claim.attempt_id))
                    items[i].error.CopyFrom(
                        _error(grpc.StatusCode.INTERNAL, "DIAL_NOW without a reservation")
                    )
                continue
            try:
                self.store.defer(ask.tenant, ask.lead_id, claim.attempt_id, decision, ask.request_id)
                items[i].deferred = True
            except Exception as err:
                log.warning("defer_failed", lead_id=ask.lead_id, error=type(err).__name__)
                released.append((ask.tenant, claim.attempt_id))
                items[i].error.CopyFrom(_error(grpc.StatusCode.UNAVAILABLE, "the deferral was not recorded"))
        self._mark_dialing(reserved, items, released)
        self.store.release_claims(released, "the gate was not answered")

    def _mark_dialing(
        self,
        reserved: list[tuple[int, str, str, str]],
        items: list[dispatcher_pb2.StartDialsResponse.Item],
        released: list[tuple[str, str]],
    ) -> None:
        """ "dialing" is committed before the worker may call the provider: from here on the
        attempt is never dialed again before a lookup at the provider."""
        try:
            marked = self.store.mark_dialing([(t, a, r) for _, t, a, r in reserved])
        except Exception as err:
            log.warning("dialing_not_recorded", error=type(err).__name__)
            marked = set()
        for i, tenant, attempt_id, reservation_id in reserved:
            if attempt_id in marked:
                items[i].reservation_id = reservation_id
            else:
                released.append((tenant, attempt_id))
                items[i].error.CopyFrom(_error(grpc.StatusCode.UNAVAILABLE, "dialing was not recorded"))

    def CompleteDials(
        self, request: dispatcher_pb2.CompleteDialsRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.CompleteDialsResponse:
        if len(request.attempts) > MAX_BATCH:
            grpc_errors.invalid_argument(context, "attempts", f"at most {MAX_BATCH} per call")
        items = [dispatcher_pb2.CompleteDialsResponse.Item() for _ in request.attempts]
        placed: list[tuple[int, Dialed]] = []
        for i, a in enumerate(request.attempts):
            rid = a.request_id or current_request_id()
            if not (a.tenant and a.attempt_id):
                items[i].error.CopyFrom(_invalid("tenant, attempt_id", "are required"))
            elif a.provider_call_id:
                placed.append(
                    (i, Dialed(a.tenant, a.attempt_id, a.provider_call_id, a.provider, a.reservation_id, rid))
                )
            elif not a.error:
                items[i].error.CopyFrom(_invalid("provider_call_id", "required unless error is set"))
            elif a.ambiguous or a.review:
                try:
                    if a.review:
                        self.store.send_to_review(a.tenant, a.attempt_id, a.provider, a.error, rid)
                    else:
                        self.store.mark_unsure(a.tenant, a.attempt_id, a.provider, a.error, rid)
                except NotFound:
                    items[i].error.CopyFrom(_not_found("dial attempt", a.attempt_id))
            else:
                # Not placed (rare): the one-attempt path frees the attempt and the reservation.
                try:
                    self.store.complete(
                        a.tenant,
                        a.attempt_id,
                        "",
                        a.provider,
                        a.reservation_id,
                        a.error,
                        rid,
                        self.policies.get(a.tenant),
                    )
                except NotFound:
                    items[i].error.CopyFrom(_not_found("dial attempt", a.attempt_id))
        if placed:
            results = self.store.complete_many([d for _, d in placed], self.policies.get)
            for (i, d), result in zip(placed, results, strict=True):
                if isinstance(result, NotFound):
                    items[i].error.CopyFrom(_not_found("dial attempt", d.attempt_id))
        return dispatcher_pb2.CompleteDialsResponse(items=items)

"""`DispatcherService`: idempotent lead storage, timelines, dial attempts, call status, dead letters.

Contract (the workers and the gateway rely on it):
- SubmitLead stores lead, decision and the "received"/"decided" events with the lead's outbox
  jobs in ONE transaction, unique on (tenant, source, vendor_lead_id) or (tenant,
  idempotency_key); a duplicate returns the same lead id with duplicate=true and enqueues
  nothing. Then `enrich`, `crm_sync` and (DIAL_NOW) `dial` on `dial.<urgency>` are enqueued
  with the tenant's delay; DEFER waits in the database for the relay; NEVER is blocked.
- A lead of the same person (email, else phone) and campaign within the tenant's merge window
  merges into the stored one (person_order.py): same lead id, duplicate=true and merged=true,
  nothing new queued; its ids keep answering with that lead. Each lead gets the next number in
  its (person, campaign) order, and the relay releases a job only after the same kind of job of
  every earlier lead in that order is finished.
- FindLeads answers, per sender id already stored (merged ones included), what a duplicate
  SubmitLead would.
- Reads are scoped by tenant: another tenant's lead is NOT_FOUND.
- RecordEvent is idempotent by dedupe_key and marks work done ("enriched", "synced").
- ClaimDialAttempt lets one claim win per attempt; CompleteDialAttempt records the provider call
  ("dialed"); DeferDial keeps a refused dial for later; RecordCallStatus is idempotent on
  (call id, status), settles the reservation and schedules busy/no-answer retries;
  RecordCallStatuses applies many such reports in order in one transaction.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from leadflow.v1 import batch_pb2, dispatcher_pb2, dispatcher_pb2_grpc
from leadflow_core import grpc_errors
from leadflow_core.grpc_batch import abort_item, item_request_ids, run_item
from leadflow_core.logs import get_logger
from leadflow_core.request_context import bound, current_request_id
from leadflow_core.timestamps import from_proto, to_proto
from leadflow_dispatcher import scheduling
from leadflow_dispatcher.attempts import CallReport
from leadflow_dispatcher.batch_servicer import MAX_BATCH, WorkerBatchServicer
from leadflow_dispatcher.batch_submit import ItemFailed, Limits, Submission, submit_many
from leadflow_dispatcher.metrics import LEADS_SUBMITTED
from leadflow_dispatcher.persons import person_keys
from leadflow_dispatcher.policies import TenantPolicies
from leadflow_dispatcher.queueing import JobSpec
from leadflow_dispatcher.relay import Relay
from leadflow_dispatcher.request_log_rpcs import RequestLogServicer
from leadflow_dispatcher.settings import DispatcherSettings
from leadflow_dispatcher.store import NotFound, Store

log = get_logger("leadflow.dispatcher")


def _detail(raw: str, context: grpc.ServicerContext) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        grpc_errors.invalid_argument(context, "detail_json", "must be a JSON object")
    if not isinstance(value, dict):
        grpc_errors.invalid_argument(context, "detail_json", "must be a JSON object")
    return value


def _require(context: grpc.ServicerContext, **fields: str) -> None:
    for name, value in fields.items():
        if not value:
            grpc_errors.invalid_argument(context, name, "is required")


class DispatcherServicer(
    WorkerBatchServicer, RequestLogServicer, dispatcher_pb2_grpc.DispatcherServiceServicer
):
    def __init__(
        self, store: Store, relay: Relay, policies: TenantPolicies, settings: DispatcherSettings
    ) -> None:
        self.store = store
        self.relay = relay
        self.policies = policies
        self.settings = settings

    def SubmitLead(
        self, request: dispatcher_pb2.SubmitLeadRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.SubmitLeadResponse:
        """The batch path with one request."""
        (result,) = self.submit_batch([request], context)
        if isinstance(result, batch_pb2.ItemError):
            abort_item(context, result)
        return result

    def SubmitLeads(
        self, request: dispatcher_pb2.SubmitLeadsRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.SubmitLeadsResponse:
        results = self.submit_batch(list(request.requests), context)
        return dispatcher_pb2.SubmitLeadsResponse(
            results=[
                dispatcher_pb2.SubmitLeadsResult(error=r)
                if isinstance(r, batch_pb2.ItemError)
                else dispatcher_pb2.SubmitLeadsResult(response=r)
                for r in results
            ]
        )

    def _prepare(
        self, request: dispatcher_pb2.SubmitLeadRequest, context: grpc.ServicerContext, request_id: str
    ) -> Submission:
        lead = request.lead
        _require(context, **{"lead.tenant": lead.tenant})
        return Submission(
            lead,
            request.decision,
            person_keys(lead, self.settings.pii_hash_key),
            self.policies.get(lead.tenant),
            request_id,
        )

    def submit_batch(
        self, requests: list[dispatcher_pb2.SubmitLeadRequest], context: grpc.ServicerContext
    ) -> list[dispatcher_pb2.SubmitLeadResponse | batch_pb2.ItemError]:
        """Store the batch in one transaction (see `batch_submit`), then enqueue its jobs."""
        header = current_request_id()
        rids = item_request_ids(header, len(requests))
        prepared = [
            run_item(context, lambda ctx, r=r, rid=rid: self._prepare(r, ctx, rid or ""))  # type: ignore[misc]
            for r, rid in zip(requests, rids, strict=True)
        ]
        submissions = [p for p in prepared if isinstance(p, Submission)]
        limits = Limits(
            self.settings.dial_delay_seconds,
            "" if "," in header else header,  # a batch's ids go per lead (Submission.request_id)
            self.settings.join_window_seconds,
            self.settings.max_broker_delay_seconds,
            self.settings.job_lease_seconds,
        )
        stored = iter(submit_many(self.store, submissions, limits) if submissions else [])
        out: list[dispatcher_pb2.SubmitLeadResponse | batch_pb2.ItemError] = []
        jobs: list[tuple[JobSpec, float]] = []
        for item, rid in zip(prepared, rids, strict=True):
            if not isinstance(item, Submission):
                out.append(item)
                continue
            result = next(stored)
            if isinstance(result, ItemFailed):
                out.append(batch_pb2.ItemError(code=grpc.StatusCode.INTERNAL.value[0], message=str(result)))
                continue
            jobs.extend(result.jobs)
            LEADS_SUBMITTED.labels(duplicate=str(result.duplicate).lower()).inc()
            with bound(rid, item.lead.tenant):
                log.info(
                    "lead_submitted",
                    lead_id=result.lead_id,
                    duplicate=result.duplicate,
                    merged=result.merged,
                    dial_state=dispatcher_pb2.DialState.Name(result.dial_state),  # type: ignore[arg-type]
                    joined=result.joined_lead_id or None,
                )
            out.append(
                dispatcher_pb2.SubmitLeadResponse(
                    lead_id=result.lead_id,
                    duplicate=result.duplicate,
                    dial_state=result.dial_state,  # type: ignore[arg-type]
                    dial_at=to_proto(result.dial_at) if result.dial_at else None,
                    reasons=result.reasons,
                    joined_lead_id=result.joined_lead_id,
                    merged=result.merged,
                )
            )
        if jobs:  # after the commit; a lost enqueue is redone by the relay when the lease ends
            self.relay.send(jobs, note_later=True)
        return out

    def FindLeads(
        self, request: dispatcher_pb2.FindLeadsRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.FindLeadsResponse:
        _require(context, tenant=request.tenant)
        if len(request.vendor_lead_ids) > 1000:
            grpc_errors.invalid_argument(context, "vendor_lead_ids", "at most 1000 ids")
        found = self.store.find_leads(
            request.tenant, scheduling.source_name(request.source), list(request.vendor_lead_ids)
        )
        return dispatcher_pb2.FindLeadsResponse(
            found=[
                dispatcher_pb2.FoundLead(
                    vendor_lead_id=vendor_id,
                    lead=dispatcher_pb2.SubmitLeadResponse(
                        lead_id=r.lead_id,
                        duplicate=True,
                        dial_state=r.dial_state,  # type: ignore[arg-type]
                        dial_at=to_proto(r.dial_at) if r.dial_at else None,
                        reasons=r.reasons,
                        joined_lead_id=r.joined_lead_id,
                        merged=r.merged,
                    ),
                )
                for vendor_id, r in found
            ]
        )

    def GetLead(
        self, request: dispatcher_pb2.GetLeadRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.GetLeadResponse:
        _require(context, tenant=request.tenant, lead_id=request.lead_id)
        try:
            return self.store.get_lead(request.tenant, request.lead_id)
        except NotFound:
            grpc_errors.not_found(context, "lead", request.lead_id)

    def GetTimeline(
        self, request: dispatcher_pb2.GetTimelineRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.GetTimelineResponse:
        _require(context, tenant=request.tenant, lead_id=request.lead_id)
        try:
            return self.store.timeline(request.tenant, request.lead_id)
        except NotFound:
            grpc_errors.not_found(context, "lead", request.lead_id)

    def RecordEvent(
        self, request: dispatcher_pb2.RecordEventRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.RecordEventResponse:
        _require(context, tenant=request.tenant, lead_id=request.lead_id, kind=request.kind)
        detail = _detail(request.detail_json, context)
        try:
            recorded = self.store.record_event(
                request.tenant,
                request.lead_id,
                request.kind,
                detail,
                request.dedupe_key,
                current_request_id(),
                from_proto(request.next_attempt_at),
                self.settings.job_lease_seconds,
            )
        except NotFound:
            grpc_errors.not_found(context, "lead", request.lead_id)
        return dispatcher_pb2.RecordEventResponse(recorded=recorded)

    def ClaimDialAttempt(
        self, request: dispatcher_pb2.ClaimDialAttemptRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.ClaimDialAttemptResponse:
        _require(context, tenant=request.tenant, lead_id=request.lead_id)
        try:
            claim = self.store.claim(
                request.tenant,
                request.lead_id,
                request.attempt or 1,
                self.settings.claim_stale_seconds,
                current_request_id(),
            )
        except NotFound:
            grpc_errors.not_found(context, "lead", request.lead_id)
        return dispatcher_pb2.ClaimDialAttemptResponse(
            claimed=claim.claimed,
            attempt_id=claim.attempt_id,
            lead=claim.lead,
            state=claim.state,
            resumed=claim.resumed,
            tries=claim.tries,
        )

    def CompleteDialAttempt(
        self, request: dispatcher_pb2.CompleteDialAttemptRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.CompleteDialAttemptResponse:
        _require(context, tenant=request.tenant, attempt_id=request.attempt_id)
        if not request.provider_call_id and not request.error:
            grpc_errors.invalid_argument(context, "provider_call_id", "required unless error is set")
        try:
            self.store.complete(
                request.tenant,
                request.attempt_id,
                request.provider_call_id,
                request.provider,
                request.reservation_id,
                request.error,
                current_request_id(),
                self.policies.get(request.tenant),
            )
        except NotFound:
            grpc_errors.not_found(context, "dial attempt", request.attempt_id)
        return dispatcher_pb2.CompleteDialAttemptResponse()

    def DeferDial(
        self, request: dispatcher_pb2.DeferDialRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.DeferDialResponse:
        _require(context, tenant=request.tenant, lead_id=request.lead_id)
        try:
            state, at = self.store.defer(
                request.tenant, request.lead_id, request.attempt_id, request.decision, current_request_id()
            )
        except NotFound:
            grpc_errors.not_found(context, "lead", request.lead_id)
        return dispatcher_pb2.DeferDialResponse(
            dial_state=state,  # type: ignore[arg-type]
            dial_at=to_proto(at) if at else None,
        )

    def RecordCallStatus(
        self, request: dispatcher_pb2.RecordCallStatusRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.RecordCallStatusResponse:
        report = self._call_report(request, context, current_request_id())
        applied, lead_id = self.store.record_call_statuses([report], self.policies.get)[0]
        return dispatcher_pb2.RecordCallStatusResponse(applied=applied, lead_id=lead_id)

    def RecordCallStatuses(
        self, request: dispatcher_pb2.RecordCallStatusesRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.RecordCallStatusesResponse:
        if len(request.requests) > MAX_BATCH:
            grpc_errors.invalid_argument(context, "requests", f"at most {MAX_BATCH} per call")
        header = current_request_id()
        rids = item_request_ids(header, len(request.requests))
        checked = [
            run_item(context, lambda ctx, r=r, rid=rid: self._call_report(r, ctx, rid or header))  # type: ignore[misc]
            for r, rid in zip(request.requests, rids, strict=True)
        ]
        reports = [c for c in checked if isinstance(c, CallReport)]
        answers = iter(self.store.record_call_statuses(reports, self.policies.get))
        results = []
        for c in checked:
            if isinstance(c, CallReport):
                applied, lead_id = next(answers)
                reply = dispatcher_pb2.RecordCallStatusResponse(applied=applied, lead_id=lead_id)
                results.append(dispatcher_pb2.RecordCallStatusesResult(response=reply))
            else:
                results.append(dispatcher_pb2.RecordCallStatusesResult(error=c))
        return dispatcher_pb2.RecordCallStatusesResponse(results=results)

    @staticmethod
    def _call_report(
        request: dispatcher_pb2.RecordCallStatusRequest, context: grpc.ServicerContext, request_id: str
    ) -> CallReport:
        _require(
            context, tenant=request.tenant, provider_call_id=request.provider_call_id, status=request.status
        )
        return CallReport(
            tenant=request.tenant,
            provider_call_id=request.provider_call_id,
            status=request.status.strip().lower(),
            duration_seconds=request.duration_seconds,
            price_usd=request.price_usd,
            params=dict(request.params),
            request_id=request_id,
            attempt_id=request.attempt_id,
        )

    # ---- dead letters ------------------------------------------------------------------

    def RecordDeadLetter(
        self, request: dispatcher_pb2.DeadLetter, context: grpc.ServicerContext
    ) -> dispatcher_pb2.DeadLetter:
        _require(context, tenant=request.tenant, queue=request.queue)
        try:
            return self.store.record_dead_letter(
                request, current_request_id(), self.policies.get(request.tenant)
            )
        except NotFound:
            grpc_errors.not_found(context, "dead letter", request.dead_letter_id)

    def ListDeadLetters(
        self, request: dispatcher_pb2.ListDeadLettersRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.ListDeadLettersResponse:
        _require(context, tenant=request.tenant)
        return dispatcher_pb2.ListDeadLettersResponse(
            dead_letters=self.store.list_dead_letters(
                request.tenant, request.queue, request.state, min(request.limit or 100, 1000)
            )
        )

    def GetDeadLetter(
        self, request: dispatcher_pb2.GetDeadLetterRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.DeadLetter:
        _require(context, tenant=request.tenant, dead_letter_id=request.dead_letter_id)
        try:
            return self.store.get_dead_letter(request.tenant, request.dead_letter_id)
        except NotFound:
            grpc_errors.not_found(context, "dead letter", request.dead_letter_id)

    def ReplayDeadLetters(
        self, request: dispatcher_pb2.ReplayDeadLettersRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.ReplayDeadLettersResponse:
        _require(context, tenant=request.tenant)
        if not request.dead_letter_id and not request.all:
            grpc_errors.invalid_argument(context, "dead_letter_id", "name one dead letter, or set all")
        try:
            jobs = self.store.replay_dead_letters(
                request.tenant,
                request.dead_letter_id,
                request.queue,
                request.all,
                current_request_id(),
                self.settings.job_lease_seconds,
            )
        except NotFound:
            grpc_errors.not_found(context, "dead letter", request.dead_letter_id)
        self.relay.send([(job, 0.0) for job in jobs])
        return dispatcher_pb2.ReplayDeadLettersResponse(replayed=len(jobs))

    def PurgeDeadLetters(
        self, request: dispatcher_pb2.PurgeDeadLettersRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.PurgeDeadLettersResponse:
        _require(context, tenant=request.tenant)
        return dispatcher_pb2.PurgeDeadLettersResponse(
            purged=self.store.purge_dead_letters(request.tenant, request.queue)
        )

    def ResolveDeadLetter(
        self, request: dispatcher_pb2.ResolveDeadLetterRequest, context: grpc.ServicerContext
    ) -> dispatcher_pb2.DeadLetter:
        _require(context, tenant=request.tenant, dead_letter_id=request.dead_letter_id)
        try:
            return self.store.resolve_dead_letter(request.tenant, request.dead_letter_id, request.note)
        except NotFound:
            grpc_errors.not_found(context, "dead letter", request.dead_letter_id)

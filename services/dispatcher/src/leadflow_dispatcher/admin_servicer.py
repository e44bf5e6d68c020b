"""`AdminService`, hosted by the dispatcher: queue, tenant, error, lead, call and health queries;
pause/resume, emergency mode, tenant pause, error resolution and the review queue.

Every action needs a reason and lands in `dispatcher_admin_audit` with the caller's identity
(`leadflow_core.caller_identity`). Tenant and emergency actions are compliance's: forwarded to
it through its own RPCs (compliance stays the one source of truth for tenants).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import redis

from leadflow.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    compliance_pb2,
    compliance_pb2_grpc,
    lead_pb2,
    tenants_pb2,
    tenants_pb2_grpc,
)
from leadflow_core import grpc_errors, queues
from leadflow_core.caller_identity import caller_identity
from leadflow_core.logs import get_logger
from leadflow_dispatcher import broker_state
from leadflow_dispatcher.admin_events import EventDeliveryAdmin
from leadflow_dispatcher.admin_requests import RequestLogAdmin
from leadflow_dispatcher.dependency_health import check_components
from leadflow_dispatcher.persons import person_keys
from leadflow_dispatcher.queue_pauses import QueuePauses, expand
from leadflow_dispatcher.reviews import ReviewClosed
from leadflow_dispatcher.settings import DispatcherSettings
from leadflow_dispatcher.store import NotFound, Store
from leadflow_dispatcher.tenant_limits import read_tenant_limits

log = get_logger("leadflow.dispatcher.admin")

DEFAULT_STATS_WINDOW = 86_400
DEFAULT_ERROR_WINDOW = 3_600


def _reason(request: Any, context: grpc.ServicerContext) -> str:
    reason = str(request.reason).strip()
    if not reason:
        grpc_errors.invalid_argument(context, "reason", "is required: every admin action is audited with why")
    return reason


class AdminServicer(RequestLogAdmin, EventDeliveryAdmin, admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        store: Store,
        pauses: QueuePauses,
        redis_client: redis.Redis,
        tenants: tenants_pb2_grpc.TenantAdminServiceStub,
        compliance: compliance_pb2_grpc.ComplianceServiceStub,
        settings: DispatcherSettings,
    ) -> None:
        self.store = store
        self.pauses = pauses
        self.redis = redis_client
        self.tenants = tenants
        self.compliance = compliance
        self.settings = settings

    def _audit(
        self,
        context: grpc.ServicerContext,
        action: str,
        target: str,
        tenant: str,
        reason: str,
        detail: dict[str, Any] | None = None,
    ) -> str:
        actor = caller_identity(context)
        self.store.audit(actor, action, target, tenant, reason, detail or {})
        log.info("admin_action", action=action, target=target, tenant=tenant, actor=actor)
        return actor

    def _forward(self, context: grpc.ServicerContext, call: Callable[[], Any]) -> Any:
        """Call compliance; its errors reach our caller with their own code."""
        try:
            return call()
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
            details = err.details() if hasattr(err, "details") else str(err)
            context.abort(code, f"compliance: {details}")

    # ---- queries ----------------------------------------------------------------------

    def GetQueueStatus(
        self, request: admin_pb2.GetQueueStatusRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GetQueueStatusResponse:
        try:
            names = expand(request.queue)
        except ValueError as err:
            grpc_errors.invalid_argument(context, "queue", str(err))
        try:
            snaps = broker_state.snapshot(self.redis, self.settings.dramatiq_namespace, names)
        except redis.RedisError as err:
            grpc_errors.unavailable(context, f"redis: {err}")
        pending, dead = self.store.queue_backlog()
        paused = self.pauses.paused()
        return admin_pb2.GetQueueStatusResponse(
            queues=[
                admin_pb2.QueueStatus(
                    queue=q.queue,
                    depth=q.depth,
                    delayed=q.delayed,
                    in_flight=q.in_flight,
                    broker_dead_letters=q.dead,
                    oldest_age_seconds=q.oldest_age_seconds,
                    outbox_pending=pending.get(q.queue, 0),
                    dead_letters_open=dead.get(q.queue, 0),
                    paused=q.queue in paused,
                    paused_reason=paused.get(q.queue, ""),
                    priority=q.queue.removeprefix("dial.") if q.queue in queues.DIAL_QUEUES else "",
                )
                for q in snaps
            ]
        )

    def GetTenantLimits(
        self, request: admin_pb2.GetTenantLimitsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GetTenantLimitsResponse:
        states = self._forward(context, lambda: read_tenant_limits(self.tenants, request.tenant))
        return admin_pb2.GetTenantLimitsResponse(tenants=states)

    def GetErrorStats(
        self, request: admin_pb2.GetErrorStatsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GetErrorStatsResponse:
        stats = self.store.error_stats(request.tenant, request.window_seconds or DEFAULT_ERROR_WINDOW)
        return admin_pb2.GetErrorStatsResponse(stats=stats, total=sum(s.count for s in stats))

    def GetLeadStats(
        self, request: admin_pb2.GetLeadStatsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GetLeadStatsResponse:
        return admin_pb2.GetLeadStatsResponse(
            stats=self.store.lead_stats(request.tenant, request.window_seconds or DEFAULT_STATS_WINDOW)
        )

    def GetCallStats(
        self, request: admin_pb2.GetCallStatsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GetCallStatsResponse:
        return admin_pb2.GetCallStatsResponse(
            stats=self.store.call_stats(request.tenant, request.window_seconds or DEFAULT_STATS_WINDOW)
        )

    def GetSystemHealth(
        self, request: admin_pb2.GetSystemHealthRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GetSystemHealthResponse:
        components = check_components(self.store, self.redis, self.settings)
        return admin_pb2.GetSystemHealthResponse(
            components=components, healthy=all(c.healthy for c in components)
        )

    def ListAdminAudit(
        self, request: admin_pb2.ListAdminAuditRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListAdminAuditResponse:
        return admin_pb2.ListAdminAuditResponse(
            entries=self.store.audit_entries(request.tenant, request.limit)
        )

    def SearchLeads(
        self, request: admin_pb2.SearchLeadsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.SearchLeadsResponse:
        if not request.tenant:
            grpc_errors.invalid_argument(context, "tenant", "is required")
        if not (request.phone or request.email or request.lead_id):
            grpc_errors.invalid_argument(context, "phone", "give a phone, an email or a lead id")
        probe = lead_pb2.Lead(
            tenant=request.tenant,
            contact=lead_pb2.Contact(email=request.email, phone=lead_pb2.Phone(e164=request.phone)),
        )
        keys = person_keys(probe, self.settings.pii_hash_key)
        return admin_pb2.SearchLeadsResponse(
            leads=self.store.search_leads(request.tenant, keys, request.lead_id, request.limit)
        )

    # ---- actions ----------------------------------------------------------------------

    def PauseQueues(
        self, request: admin_pb2.PauseQueuesRequest, context: grpc.ServicerContext
    ) -> admin_pb2.PauseQueuesResponse:
        reason = _reason(request, context)
        try:
            names = expand(request.queue)
        except ValueError as err:
            grpc_errors.invalid_argument(context, "queue", str(err))
        actor = self._audit(
            context, "queues.pause", request.queue or "*", "", reason, {"queues": list(names)}
        )
        return admin_pb2.PauseQueuesResponse(paused=self.pauses.pause(names, reason, actor))

    def ResumeQueues(
        self, request: admin_pb2.ResumeQueuesRequest, context: grpc.ServicerContext
    ) -> admin_pb2.PauseQueuesResponse:
        reason = _reason(request, context)
        try:
            names = expand(request.queue)
        except ValueError as err:
            grpc_errors.invalid_argument(context, "queue", str(err))
        self._audit(context, "queues.resume", request.queue or "*", "", reason, {"queues": list(names)})
        return admin_pb2.PauseQueuesResponse(paused=self.pauses.resume(names))

    def SetEmergencyMode(
        self, request: admin_pb2.SetEmergencyModeRequest, context: grpc.ServicerContext
    ) -> admin_pb2.SetEmergencyModeResponse:
        reason = _reason(request, context)
        if request.on and request.duration_seconds == 0:
            grpc_errors.invalid_argument(context, "duration_seconds", "must be > 0 to turn emergency mode on")
        actor = self._audit(
            context,
            "emergency.on" if request.on else "emergency.off",
            request.tenant or "*",
            request.tenant,
            reason,
            {"duration_seconds": request.duration_seconds} if request.on else {},
        )
        if not request.on:
            self._forward(
                context,
                lambda: self.compliance.ClearEmergencyStop(
                    compliance_pb2.ClearEmergencyStopRequest(tenant=request.tenant, actor=actor)
                ),
            )
            return admin_pb2.SetEmergencyModeResponse()
        reply = self._forward(
            context,
            lambda: self.compliance.SetEmergencyStop(
                compliance_pb2.SetEmergencyStopRequest(
                    tenant=request.tenant,
                    duration_seconds=request.duration_seconds,
                    reason=reason,
                    actor=actor,
                )
            ),
        )
        return admin_pb2.SetEmergencyModeResponse(until=reply.until)

    def SetTenantCallsPaused(
        self, request: admin_pb2.SetTenantCallsPausedRequest, context: grpc.ServicerContext
    ) -> admin_pb2.SetTenantCallsPausedResponse:
        reason = _reason(request, context)
        if not request.tenant:
            grpc_errors.invalid_argument(context, "tenant", "is required")
        self._audit(
            context,
            "tenant.pause" if request.paused else "tenant.resume",
            request.tenant,
            request.tenant,
            reason,
        )
        reply = self._forward(
            context,
            lambda: self.tenants.SetPaused(
                tenants_pb2.SetPausedRequest(name=request.tenant, paused=request.paused, reason=reason)
            ),
        )
        return admin_pb2.SetTenantCallsPausedResponse(paused=reply.tenant.paused)

    def ResolveError(
        self, request: admin_pb2.ResolveErrorRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ResolveErrorResponse:
        reason = _reason(request, context)
        try:
            self.store.get_dead_letter(request.tenant, request.dead_letter_id)
        except NotFound:
            grpc_errors.not_found(context, "dead letter", request.dead_letter_id)
        self._audit(context, "error.resolve", request.dead_letter_id, request.tenant, reason)
        dl = self.store.resolve_dead_letter(request.tenant, request.dead_letter_id, reason)
        return admin_pb2.ResolveErrorResponse(state=dl.state)

    def ListReviews(
        self, request: admin_pb2.ListReviewsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListReviewsResponse:
        return admin_pb2.ListReviewsResponse(
            items=self.store.list_reviews(request.tenant, request.state, request.limit)
        )

    def DecideReview(
        self, request: admin_pb2.DecideReviewRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ReviewItem:
        reason = _reason(request, context)
        if request.state and not (len(request.state.strip()) == 2 and request.state.strip().isascii()):
            grpc_errors.invalid_argument(context, "state", "a two-letter US state code, e.g. NY")
        actor = caller_identity(context)
        try:
            item = self.store.decide_review(
                request.tenant, request.lead_id, request.approve, actor, reason, request.state.strip().upper()
            )
        except NotFound:
            grpc_errors.not_found(context, "review", request.lead_id)
        except ReviewClosed as err:
            grpc_errors.failed_precondition(context, "REVIEW_CLOSED", f"review already {err}")
        self._audit(
            context,
            "review.approve" if request.approve else "review.reject",
            request.lead_id,
            request.tenant,
            reason,
        )
        return item

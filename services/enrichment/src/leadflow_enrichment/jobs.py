"""The bodies of the actors: fetch the lead from the dispatcher, call the provider, report back.

Each is idempotent: a redelivered message finds its work done (GetLead.work_done), its dial
attempt claimed, or its report deduplicated by key.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from dramatiq.middleware import CurrentMessage
from redis.exceptions import LockError

from leadflow.v1 import decision_pb2, dispatcher_pb2, lead_pb2
from leadflow_core import clock, timestamps
from leadflow_core.logs import get_logger
from leadflow_core.pii import subject_hash
from leadflow_core.request_context import current_request_id
from leadflow_enrichment.context import WorkerContext
from leadflow_enrichment.failures import ErrorClass, ProviderError
from leadflow_enrichment.handling import Hold, JobInfo, classify
from leadflow_enrichment.limits import LimitBusy
from leadflow_enrichment.providers.base import CallRequest, Crm, CrmResult, Enrichment, LeadView
from leadflow_enrichment.providers.twilio import with_attempt

log = get_logger("leadflow.worker.jobs")

_URGENCY = {
    lead_pb2.URGENCY_EMERGENCY: "emergency",
    lead_pb2.URGENCY_HIGH: "high",
    lead_pb2.URGENCY_MEDIUM: "medium",
    lead_pb2.URGENCY_LOW: "low",
}
# Error classes that count against a provider's circuit breaker (the provider is unwell).
_BREAKER_CLASSES = (ErrorClass.TEMPORARY, ErrorClass.RATE_LIMITED)
NEUTRAL_FIT = 50


def lead_view(lead: lead_pb2.Lead) -> LeadView:
    contact = lead.contact
    return LeadView(
        tenant=lead.tenant,
        lead_id=lead.lead_id,
        source=lead_pb2.Source.Name(lead.source).removeprefix("SOURCE_").lower(),
        first_name=contact.first_name,
        last_name=contact.last_name,
        email=contact.email,
        phone_e164=contact.phone.e164,
        urgency=_URGENCY.get(lead.urgency, "medium"),
        message=lead.message,
        state=contact.address.state,
        postal_code=contact.address.postal_code,
        vendor_lead_id=lead.vendor_lead_id,
        custom_fields=dict(lead.custom_fields),
    )


def _get_lead(ctx: WorkerContext, info: JobInfo) -> dispatcher_pb2.GetLeadResponse:
    return ctx.get_lead(info.tenant, info.lead_id)


def _record(ctx: WorkerContext, info: JobInfo, kind: str, detail: dict[str, Any], dedupe_key: str) -> None:
    ctx.record_event(
        dispatcher_pb2.RecordEventRequest(
            tenant=info.tenant,
            lead_id=info.lead_id,
            kind=kind,
            detail_json=json.dumps(detail),
            dedupe_key=dedupe_key,
            request_id=current_request_id(),
        )
    )


def _breaker_wait(ctx: WorkerContext, info: JobInfo, provider: str) -> float:
    """Seconds to hold a job for this tenant's provider (0: go); no Redis read while this
    process saw the breaker clean a moment ago."""
    key = f"{info.tenant}\0{provider}"
    if ctx.clean_breakers.is_clean(key):
        return 0.0
    wait, clean = ctx.breaker(info.tenant, provider).check()
    ctx.clean_breakers.mark(key, clean)
    return wait


def _guard(ctx: WorkerContext, info: JobInfo, provider: str) -> None:
    """Hold the job while this tenant's breaker for this provider is open."""
    wait = _breaker_wait(ctx, info, provider)
    if wait > 0:
        raise Hold(wait, f"circuit open for {provider}")


def _note_result(ctx: WorkerContext, info: JobInfo, provider: str, err: ProviderError | None) -> None:
    key = f"{info.tenant}\0{provider}"
    if err is None:
        if not ctx.clean_breakers.is_clean(key):
            # A success after failures (or the half-open probe) closes the breaker.
            ctx.breaker(info.tenant, provider).record_success()
            ctx.clean_breakers.mark(key, True)
        return
    if err.error_class in _BREAKER_CLASSES:
        ctx.clean_breakers.mark(key, False)
        if ctx.breaker(info.tenant, provider).record_failure():
            log.warning("circuit_opened", provider=provider, tenant=info.tenant)


# ---- enrich ---------------------------------------------------------------------------------


def enrich(ctx: WorkerContext, info: JobInfo) -> None:
    lead = _get_lead(ctx, info)
    if "enriched" in lead.work_done:
        return
    config = ctx.configs.get(info.tenant, "llm", fresh=info.fresh_config)
    info.schedule = ctx.schedule(config)
    view = lead_view(lead.lead)
    try:
        scorer = ctx.registry.scorer(info.tenant, config)
    except ProviderError as err:
        enrichment = _neutral(f"scorer unavailable: {err}", "")
    else:
        info.provider = scorer.name
        enrichment = _score(ctx, info, scorer, view, config)
    _record(
        ctx,
        info,
        "enriched",
        {
            "intent": enrichment.intent,
            "fit_score": enrichment.fit_score,
            "reasons": list(enrichment.reasons),
            "model": enrichment.model,
            "fallback": enrichment.fallback,
        },
        f"enriched:{info.lead_id}",
    )


def _neutral(reason: str, model: str) -> Enrichment:
    # AI trouble never blocks sync or dial: a neutral score, with the reason kept.
    return Enrichment(intent="medium", fit_score=NEUTRAL_FIT, reasons=(reason,), model=model, fallback=True)


def _score(ctx: WorkerContext, info: JobInfo, scorer: Any, view: LeadView, config: Any) -> Enrichment:
    if _breaker_wait(ctx, info, scorer.name) > 0:
        return _neutral(f"{scorer.name} circuit open", scorer.name)
    options = dict(config.config.options) if config is not None else {}
    try:
        with ctx.limiters.slot(info.tenant, scorer.name, ctx.limits(scorer.name, options)):
            result: Enrichment = scorer.score(view)
    except LimitBusy:
        return _neutral(f"{scorer.name} over its rate limit", scorer.name)
    except ProviderError as err:
        _note_result(ctx, info, scorer.name, err)
        return _neutral(f"{scorer.name} failed ({err.error_class}): {err}"[:300], scorer.name)
    except Exception as err:
        return _neutral(f"{scorer.name} failed: {type(err).__name__}"[:300], scorer.name)
    _note_result(ctx, info, scorer.name, None)
    return result


# ---- crm_sync -------------------------------------------------------------------------------


def _person_lock_key(ctx: WorkerContext, lead: lead_pb2.Lead) -> str:
    basis = lead.contact.phone.e164 or lead.contact.email.lower() or lead.lead_id
    return ctx.settings.redis_key("person", lead.tenant, subject_hash(basis, ctx.settings.pii_hash_key))


def crm_sync(ctx: WorkerContext, info: JobInfo) -> None:
    lead = _get_lead(ctx, info)
    if "synced" in lead.work_done:
        return
    if lead.superseded_by:
        _record(
            ctx, info, "synced", {"skipped": "superseded", "by": lead.superseded_by}, f"synced:{info.lead_id}"
        )
        return
    config = ctx.configs.get(info.tenant, "crm", fresh=info.fresh_config)
    info.schedule = ctx.schedule(config)
    crm = ctx.registry.crm(info.tenant, config)
    info.provider = crm.name
    _guard(ctx, info, crm.name)
    options = dict(config.config.options) if config is not None else {}
    enrichment = _enrichment_of(lead)
    # Updates about one person apply in vendor-stamped order: one sync per person at a time,
    # and a lead that a newer one superseded meanwhile is not written over it.
    lock = ctx.redis.lock(_person_lock_key(ctx, lead.lead), timeout=ctx.settings.person_lock_seconds)
    if not lock.acquire(blocking=True, blocking_timeout=5.0):
        raise Hold(1.0, "person busy")
    try:
        fresh = _get_lead(ctx, info)
        if fresh.superseded_by:
            _record(
                ctx,
                info,
                "synced",
                {"skipped": "superseded", "by": fresh.superseded_by},
                f"synced:{info.lead_id}",
            )
            return
        view = lead_view(lead.lead)
        try:
            with ctx.limiters.slot(info.tenant, crm.name, ctx.limits(crm.name, options)):
                written = _write_once(ctx, info, crm, view, enrichment)
        except LimitBusy:
            raise Hold(ctx.settings.limit_wait_seconds, f"{crm.name} limit") from None
        except ProviderError as err:
            _note_result(ctx, info, crm.name, err)
            raise
        _note_result(ctx, info, crm.name, None)
    finally:
        # An expired lock (a very slow CRM) is no longer ours to release.
        with contextlib.suppress(LockError):
            lock.release()
    result, found = written
    _record(
        ctx,
        info,
        "synced",
        {
            "provider": crm.name,
            "external_id": result.external_id,
            "created": result.created,
            "enriched": enrichment is not None,
            # The retry found the record an earlier try wrote (its answer was lost) and wrote nothing.
            "found": found,
        },
        f"synced:{info.lead_id}",
    )


# A lead's CRM write attempts are remembered this long (a retry or a replay within it looks first).
CRM_WRITE_MARK_SECONDS = 2 * 86_400


def _write_once(
    ctx: WorkerContext, info: JobInfo, crm: Crm, view: LeadView, enrichment: Enrichment | None
) -> tuple[CrmResult, bool]:
    """Write the lead to the CRM unless an earlier try already did: (result, found earlier).

    The first try marks the lead in Redis before it writes. A try that finds the mark (the write
    may have landed and only its answer, or its "synced" report, was lost) asks the CRM for the
    lead's record first and writes only when there is none. Without the mark (Redis lost it)
    the write still goes by the lead's id, so at worst the record is updated, never doubled."""
    mark = ctx.settings.redis_key("crm_write", info.tenant, info.lead_id)
    first = bool(ctx.redis.set(mark, "1", nx=True, ex=CRM_WRITE_MARK_SECONDS))
    if not first:
        earlier = crm.find_lead(view)
        if earlier is not None:
            log.info("crm_write_found", lead_id=info.lead_id, provider=crm.name)
            return earlier, True
    return crm.upsert_lead(view, enrichment), False


def _enrichment_of(lead: dispatcher_pb2.GetLeadResponse) -> Enrichment | None:
    if not lead.enrichment_json:
        return None
    data = json.loads(lead.enrichment_json)
    return Enrichment(
        intent=str(data.get("intent", "medium")),
        fit_score=int(data.get("fit_score", NEUTRAL_FIT)),
        reasons=tuple(str(r) for r in data.get("reasons", [])),
        model=str(data.get("model", "")),
        fallback=bool(data.get("fallback", False)),
    )


# ---- dial -----------------------------------------------------------------------------------


# Claim states in which another worker may still be dialing the attempt, or looking its call up.
CLAIM_HELD_STATES = frozenset({"claimed", "dialing", "reconciling"})


def dial(ctx: WorkerContext, info: JobInfo) -> None:
    config = ctx.configs.get(info.tenant, "dialer", fresh=info.fresh_config)
    info.schedule = ctx.schedule(config)
    dialer = ctx.registry.dialer(info.tenant, config)
    info.provider = dialer.name
    # Breaker and limits before the claim: a held job has claimed and reserved nothing.
    _guard(ctx, info, dialer.name)
    options = dict(config.config.options) if config is not None else {}
    try:
        with ctx.limiters.slot(info.tenant, dialer.name, ctx.limits(dialer.name, options)):
            _dial_claimed(ctx, info, dialer, options)
    except LimitBusy:
        raise Hold(ctx.settings.limit_wait_seconds, f"{dialer.name} limit") from None


def _dial_claimed(ctx: WorkerContext, info: JobInfo, dialer: Any, options: dict[str, str]) -> None:
    # One hop claims the attempt (one claim wins, in PostgreSQL) and asks compliance's final
    # gate to reserve the call; a refused gate is recorded there as a deferral or block. A call
    # let through is recorded "dialing" there, in its own commit, before the provider is called.
    start = _start(ctx, info)
    claim = start.claim
    if not claim.claimed:
        log.info("dial_not_claimed", lead_id=info.lead_id, attempt=info.attempt, state=claim.state)
        if claim.state in CLAIM_HELD_STATES:
            # Another worker holds the attempt: this copy of the job (Dramatiq redelivered it
            # after that worker's death, or the outbox resent it) waits and asks again, so the
            # dial goes on as soon as a dead holder's claim turns stale, not a lease later.
            raise Hold(ctx.settings.claim_poll_seconds, "attempt claimed by another worker")
        return
    if claim.reconcile:
        # This attempt may already have reached the provider: look before any dial.
        if _reconcile(ctx, info, dialer, claim, options):
            return
        start = _start(ctx, info)  # proven not placed (the attempt is failed): claim it to dial
        claim = start.claim
        if not claim.claimed or claim.reconcile:
            log.info("dial_not_claimed", lead_id=info.lead_id, attempt=info.attempt, state=claim.state)
            return
    attempt_id = claim.attempt_id
    decision = start.decision
    if start.deferred:
        log.info("dial_deferred", lead_id=info.lead_id, action=decision_pb2.DialAction.Name(decision.action))
        return
    reservation_id = start.reservation_id
    if decision.action != decision_pb2.DIAL_ACTION_DIAL_NOW or not reservation_id:
        # The dispatcher never answers so; were it to, no call goes out without a reservation.
        raise ProviderError("dial start without a reservation", ErrorClass.SYSTEM)
    request = CallRequest(
        attempt_id=attempt_id,
        tenant=info.tenant,
        lead_id=info.lead_id,
        to_e164=claim.lead.contact.phone.e164,
        from_number=options.get("from_number", ""),
        # The marker in the callback URL matches a call whose create went unanswered to its attempt.
        status_callback_url=with_attempt(ctx.callback_url(info.tenant), attempt_id),
        record=decision.recording_allowed,
        recording_disclosure=decision.recording_disclosure_required,
    )
    try:
        handle = dialer.place_call(request)
    except Exception as err:
        if isinstance(err, ProviderError):
            _note_result(ctx, info, dialer.name, err)
        # A refusal proves no call: the attempt is freed for the retry and the reservation for
        # others. Anything else (5xx, timeout, dropped answer, a crash of ours) may have placed
        # one: the attempt stays "unsure", holding its reservation, and is reconciled first.
        ambiguous = not isinstance(err, ProviderError) or err.ambiguous
        _complete(
            ctx,
            info,
            attempt_id,
            dialer.name,
            reservation_id,
            error=f"{type(err).__name__}: {err}"[:2000],
            ambiguous=ambiguous,
        )
        raise
    _note_result(ctx, info, dialer.name, None)
    _complete(ctx, info, attempt_id, dialer.name, reservation_id, call_id=handle.provider_call_id)
    log.info("dialed", lead_id=info.lead_id, attempt=info.attempt, call_id=handle.provider_call_id)


def _start(ctx: WorkerContext, info: JobInfo) -> dispatcher_pb2.StartDialsResponse.Item:
    return ctx.start_dial(
        dispatcher_pb2.ClaimDialAttemptRequest(
            tenant=info.tenant, lead_id=info.lead_id, attempt=info.attempt, request_id=current_request_id()
        )
    )


def _complete(
    ctx: WorkerContext,
    info: JobInfo,
    attempt_id: str,
    provider: str,
    reservation_id: str,
    *,
    call_id: str = "",
    error: str = "",
    ambiguous: bool = False,
    review: bool = False,
) -> None:
    ctx.complete_dial(
        dispatcher_pb2.CompleteDialAttemptRequest(
            tenant=info.tenant,
            attempt_id=attempt_id,
            provider_call_id=call_id,
            provider=provider,
            reservation_id=reservation_id,
            error=error,
            ambiguous=ambiguous,
            review=review,
            request_id=current_request_id(),
        )
    )


def _reconcile(
    ctx: WorkerContext,
    info: JobInfo,
    dialer: Any,
    claim: dispatcher_pb2.ClaimDialAttemptResponse,
    options: dict[str, str],
) -> bool:
    """Whether a call exists for an attempt that may have reached the provider. True: settled
    here (the call found and reported as placed, or the lead sent to review because the
    provider could not tell); False: the provider proves no call, the attempt is failed."""
    settings = ctx.settings
    stamped = timestamps.from_proto(claim.dialing_at) if claim.HasField("dialing_at") else None
    # The dispatcher stamps on the service clock (shifted in drills); the provider's is real.
    dialing_at = stamped - clock.offset() if stamped is not None else None
    if dialing_at is None:
        # No record of when it may have gone out: nothing can bound a lookup.
        _complete(
            ctx,
            info,
            claim.attempt_id,
            dialer.name,
            claim.reservation_id,
            error="no dialing instant",
            review=True,
        )
        return True
    # A create may still be in flight at the provider, or not yet in its list.
    wait = settings.dial_reconcile_grace_seconds - (datetime.now(UTC) - dialing_at).total_seconds()
    if wait > 0:
        time.sleep(wait)
    since = dialing_at - timedelta(seconds=settings.dial_reconcile_skew_seconds)
    try:
        found = dialer.find_calls(claim.lead.contact.phone.e164, options.get("from_number", ""), since)
    except Exception as err:
        # Not proven either way: a temporary failure leaves the attempt "unsure" (never dialed
        # again before a lookup) and reads the list again shortly; only a lasting one needs a person.
        failures = _lookup_failures()
        retry = classify(err)[0] is ErrorClass.TEMPORARY and failures < settings.dial_lookup_attempts
        if not retry:
            log.warning("dial_unproven", lead_id=info.lead_id, attempt=info.attempt, error=type(err).__name__)
        _complete(
            ctx,
            info,
            claim.attempt_id,
            dialer.name,
            claim.reservation_id,
            error=f"lookup failed: {type(err).__name__}: {err}"[:2000],
            ambiguous=retry,
            review=not retry,
        )
        if retry:
            raise Hold(settings.dial_lookup_retry_seconds, f"call lookup failed ({failures})") from None
        return True
    if found:
        if len(found) > 1:
            log.warning("dial_calls_found", lead_id=info.lead_id, attempt=info.attempt, count=len(found))
        call_id = found[0].provider_call_id
        _complete(ctx, info, claim.attempt_id, dialer.name, claim.reservation_id, call_id=call_id)
        log.info("dial_reconciled", lead_id=info.lead_id, attempt=info.attempt, call_id=call_id)
        return True
    _complete(
        ctx,
        info,
        claim.attempt_id,
        dialer.name,
        claim.reservation_id,
        error="reconciled: the provider lists no call",
    )
    return False


def _lookup_failures() -> int:
    """Failed call lookups of this dial job so far, this one included (kept in the message's
    options, which its retries carry)."""
    message = CurrentMessage.get_current_message()
    if message is None:
        return 1
    failures = int(message.options.get("lookup_failures", 0)) + 1
    message.options["lookup_failures"] = failures
    return failures


# ---- call_status (reconcile a call whose final callback never came) -------------------------

FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


def call_status(ctx: WorkerContext, info: JobInfo) -> None:
    call_id = str(info.extra.get("provider_call_id", ""))
    if not call_id:
        raise ProviderError("call_status job without a call id", ErrorClass.VALIDATION)
    config = ctx.configs.get(info.tenant, "dialer", fresh=info.fresh_config)
    info.schedule = ctx.schedule(config)
    dialer = ctx.registry.dialer(info.tenant, config)
    info.provider = dialer.name
    status = dialer.fetch_status(call_id)
    if status.status not in FINAL_STATUSES:
        # Still going: look again later (not a failure).
        raise Hold(ctx.settings.call_status_poll_seconds, f"call still {status.status}")
    ctx.dispatcher.RecordCallStatus(
        dispatcher_pb2.RecordCallStatusRequest(
            tenant=info.tenant,
            provider_call_id=call_id,
            status=status.status,
            duration_seconds=status.duration_seconds,
            price_usd=status.price_usd,
            params={"source": "reconcile", "checked_at": str(int(time.time()))},
        )
    )


# ---- call_price (the provider's price of a call that ended without one) ---------------------


def call_price(ctx: WorkerContext, info: JobInfo) -> None:
    """Twilio prices a call some time after it ends. Until the price is there, look again; past
    `call_price_wait_seconds` give up, and the reservation stays settled at its estimate."""
    call_id = str(info.extra.get("provider_call_id", ""))
    if not call_id:
        raise ProviderError("call_price job without a call id", ErrorClass.VALIDATION)
    config = ctx.configs.get(info.tenant, "dialer", fresh=info.fresh_config)
    info.schedule = ctx.schedule(config)
    dialer = ctx.registry.dialer(info.tenant, config)
    info.provider = dialer.name
    status = dialer.fetch_status(call_id)
    waited = time.time() - float(info.extra.get("ended_at") or 0.0)
    if not status.price_usd and waited < ctx.settings.call_price_wait_seconds:
        raise Hold(ctx.settings.call_price_poll_seconds, "the provider has not priced the call yet")
    if not status.price_usd:
        log.warning("call_price_unavailable", lead_id=info.lead_id, call_id=call_id, waited=int(waited))
    # The status the call ended with (a repeat): the dispatcher only takes the price from it.
    ctx.dispatcher.RecordCallStatus(
        dispatcher_pb2.RecordCallStatusRequest(
            tenant=info.tenant,
            provider_call_id=call_id,
            status=status.status,
            duration_seconds=status.duration_seconds,
            price_usd=status.price_usd,
            params={"source": "price", "checked_at": str(int(time.time()))},
        )
    )

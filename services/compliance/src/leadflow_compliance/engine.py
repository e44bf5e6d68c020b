"""The rule engine: facts in, decision out. Pure — no gRPC, no SQL, no clock.

Rules come in two kinds. A *bar* forbids auto-dialing outright (no consent, DNC, a test lead...)
and yields NEVER. A *constraint* says when dialing is allowed (calling hours, attempt caps, a
pause) as a function `earliest(t)`; the engine finds the first instant every constraint allows
by iterating them to a fixed point, and reports each constraint that moved it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Literal

from leadflow_compliance import recording
from leadflow_compliance.hours import day_kind, is_state_holiday, next_open
from leadflow_compliance.phone import PhoneFacts
from leadflow_compliance.rule_table import RuleTable, StateRule

Action = Literal["dial_now", "defer", "never"]
ReassignedAnswer = Literal["yes", "no", "no_data"]
FEATURES = ("auto_dial", "ai_enrichment", "crm_sync")
# No allowed instant this far ahead means something is wrong with the inputs: a person looks.
SEARCH_HORIZON = timedelta(days=30)


@dataclass(frozen=True)
class Policy:
    consent_expiry_days: int = 0
    window_start: time | None = None
    window_end: time | None = None
    fallback_timezone: str = ""


@dataclass(frozen=True)
class Facts:
    """Everything the rules look at, gathered by the caller from the lead and storage."""

    now: datetime
    phone: PhoneFacts
    policy: Policy = field(default_factory=Policy)
    plan_features: frozenset[str] = frozenset(FEATURES)
    tenant_active: bool = True
    is_test: bool = False
    address_state: str | None = None
    # When the latest consent for this tenant and number was given, if any.
    consent_at: datetime | None = None
    # Consent names another seller than this tenant.
    consent_other_seller: bool = False
    # A consent-proof provider rejected the evidence (TrustedForm / Jornaya), with why.
    consent_proof_failure: str = ""
    reassigned: ReassignedAnswer = "no_data"
    revoked_at: datetime | None = None
    internal_dnc: bool = False
    registry_dnc: bool = False
    # When the person last asked the tenant about something (an inquiry creates an EBR).
    inquiry_at: datetime | None = None
    # Contact attempts (calls and texts) to this person by this tenant, any order.
    attempts: Sequence[datetime] = ()
    paused: bool = False
    pause_retry: timedelta = timedelta(minutes=5)
    emergency_stop_until: datetime | None = None
    emergency_stop_reason: str = ""
    # Granted consent in the lead that lacks evidence: what is missing (consent_evidence.py).
    consent_unverified: tuple[str, ...] = ()
    # The tenant's recording setting (recording.py) and the state of its caller-id number.
    recording_setting: str = "never"
    caller_state: str | None = None


@dataclass(frozen=True)
class Finding:
    rule_id: str
    message: str
    statute: str
    action: Action
    not_before: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    action: Action
    not_before: datetime | None
    reasons: tuple[Finding, ...]
    rules_version: str
    needs_review: bool = False
    recording_allowed: bool = False
    recording_disclosure_required: bool = False
    recording_reason: str = ""
    # "verified", "unverified", "missing" or "revoked".
    consent_status: str = ""
    blocked_features: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Constraint:
    rule_id: str
    message: str
    statute: str
    # First allowed instant >= t, or None: never within the search horizon.
    earliest: Callable[[datetime], datetime | None]


def _states(facts: Facts) -> tuple[str, ...]:
    found = {s for s in (facts.phone.state, facts.address_state) if s}
    return tuple(sorted(found))


def _zones(facts: Facts) -> tuple[str, ...]:
    if facts.phone.zones:
        return facts.phone.zones
    return (facts.policy.fallback_timezone,) if facts.policy.fallback_timezone else ()


def _bars(facts: Facts, table: RuleTable, states: tuple[str, ...], zones: tuple[str, ...]) -> list[Finding]:
    fed = table.federal
    bars: list[Finding] = []

    def bar(rule_id: str, message: str, statute: str) -> None:
        bars.append(Finding(rule_id, message, statute, "never"))

    if facts.is_test:
        bar("lead.test", "vendor test lead: stored, never dialed", "leadflow policy")
    if not facts.tenant_active:
        bar("tenant.inactive", "tenant is deactivated", "leadflow policy")
    if "auto_dial" not in facts.plan_features:
        bar("plan.auto_dial", "the tenant's plan does not include auto-dialing", "subscription plan")
    consent_at = facts.consent_at
    if facts.revoked_at is not None and (consent_at is None or consent_at <= facts.revoked_at):
        bar("consent.revoked", "consent was revoked; new consent is needed", fed.revocation.statute)
    elif consent_at is None and facts.consent_unverified:
        bar(
            "consent.unverified",
            "consent is unverified (missing "
            + ", ".join(facts.consent_unverified)
            + "): stored, not auto-dialed",
            fed.consent.statute,
        )
    elif consent_at is None:
        bar("consent.missing", "no prior express written consent to auto-dial", fed.consent.statute)
    else:
        expiry = facts.policy.consent_expiry_days
        if expiry and facts.now - consent_at > timedelta(days=expiry):
            bar("consent.expired", f"consent is older than the tenant's {expiry} days", fed.consent.statute)
        if facts.consent_other_seller:
            bar("consent.seller", "the consent names another seller", fed.consent.statute)
        if facts.consent_proof_failure:
            bar(
                "consent.proof", f"consent proof rejected: {facts.consent_proof_failure}", fed.consent.statute
            )
        if facts.reassigned == "yes":
            bar(
                "consent.reassigned",
                "the number was reassigned after consent was given",
                fed.reassigned_numbers.statute,
            )
    if facts.internal_dnc:
        bar("dnc.internal", "the number is on the tenant's do-not-call list", fed.dnc_internal.statute)
    if facts.registry_dnc and not _registry_exempt(facts, table):
        bar("dnc.registry", "the number is on the National DNC Registry", fed.dnc_registry.statute)
    if not zones or (not states and not facts.policy.fallback_timezone):
        bar(
            "location.unknown",
            "the callee's state or time zone cannot be determined; a person must review",
            fed.unknown_location.statute,
        )
    return bars


def _consent_status(facts: Facts) -> str:
    consent_at = facts.consent_at
    if facts.revoked_at is not None and (consent_at is None or consent_at <= facts.revoked_at):
        return "revoked"
    if consent_at is not None:
        return "verified"
    return "unverified" if facts.consent_unverified else "missing"


def _registry_exempt(facts: Facts, table: RuleTable) -> bool:
    """Express consent or an established business relationship (a recent inquiry) exempts."""
    if facts.consent_at is not None and (facts.revoked_at is None or facts.consent_at > facts.revoked_at):
        return True
    days = table.federal.ebr.inquiry_days
    # A do-not-call request to the seller ends the relationship.
    return (
        facts.inquiry_at is not None
        and not facts.internal_dnc
        and facts.now - facts.inquiry_at <= timedelta(days=days)
    )


def _state_window(row: StateRule, code: str) -> Callable[[date], tuple[time, time] | None]:
    def window_for(day: date) -> tuple[time, time] | None:
        if row.holiday_ban and is_state_holiday(code, day):
            return None
        assert row.hours is not None
        return row.hours.window(day_kind(day))

    return window_for


def _attempt_cap(attempts: Sequence[datetime], cap: int, window: timedelta) -> Callable[[datetime], datetime]:
    ordered = sorted(attempts)

    def earliest(t: datetime) -> datetime:
        # Attempts still inside the window at t are those after t - window.
        inside = len(ordered) - bisect.bisect_right(ordered, t - window)
        if inside < cap:
            return t
        # Allowed once the cap-th most recent attempt has left the window.
        return max(t, ordered[len(ordered) - cap] + window)

    return earliest


def constraints(
    facts: Facts, table: RuleTable, states: tuple[str, ...], zones: tuple[str, ...]
) -> list[Constraint]:
    out: list[Constraint] = []
    if facts.emergency_stop_until is not None and facts.emergency_stop_until > facts.now:
        until = facts.emergency_stop_until
        out.append(
            Constraint(
                "emergency_stop",
                f"emergency stop: {facts.emergency_stop_reason or 'no reason given'}",
                "leadflow policy",
                lambda t: max(t, until),
            )
        )
    if facts.paused:
        resume = facts.now + facts.pause_retry
        out.append(
            Constraint("tenant.paused", "tenant is paused", "leadflow policy", lambda t: max(t, resume))
        )
    fed_hours = table.federal.calling_hours
    out.append(
        Constraint(
            "federal.calling_hours",
            "outside 08:00-21:00 in the callee's local time",
            fed_hours.statute,
            lambda t: next_open(t, zones, lambda day: fed_hours.hours.window(day_kind(day))),
        )
    )
    for code in states:
        row = table.states.get(code)
        if row is None:
            continue
        if row.hours is not None:
            window_for = _state_window(row, code)
            out.append(
                Constraint(
                    f"state.{code}.calling_hours",
                    f"outside {row.name}'s calling hours (or a day it bans calls)",
                    row.statute,
                    lambda t, w=window_for: next_open(t, zones, w),  # type: ignore[misc]
                )
            )
        if row.attempt_cap is not None:
            cap = row.attempt_cap
            out.append(
                Constraint(
                    f"state.{code}.attempt_cap",
                    f"{row.name} allows {cap.max} contact attempt(s) per {cap.window_hours} h",
                    row.statute,
                    _attempt_cap(facts.attempts, cap.max, timedelta(hours=cap.window_hours)),
                )
            )
    policy = facts.policy
    if policy.window_start is not None or policy.window_end is not None:
        start = policy.window_start or time(0, 0)
        end = policy.window_end or time(23, 59, 59, 999999)
        out.append(
            Constraint(
                "tenant.calling_window",
                "outside the tenant's own calling window",
                "tenant policy",
                lambda t: next_open(t, zones, lambda _day: (start, end)),
            )
        )
    return out


def schedule(now: datetime, rules: Sequence[Constraint]) -> tuple[datetime | None, list[Finding]]:
    """The first instant every constraint allows, and the constraints that pushed it later."""
    t = now
    movers: dict[str, tuple[Constraint, datetime]] = {}
    # Every rule that forbids the call now is a reason, even when another pushes it further.
    for rule in rules:
        blocked_until = rule.earliest(now)
        if blocked_until is not None and blocked_until > now:
            movers[rule.rule_id] = (rule, blocked_until)
    for _ in range(200):
        moved = False
        for rule in rules:
            candidate = rule.earliest(t)
            if candidate is None or candidate - now > SEARCH_HORIZON:
                return None, [Finding(rule.rule_id, rule.message, rule.statute, "never")]
            if candidate > t:
                t, moved = candidate, True
                movers[rule.rule_id] = (rule, candidate)
        if not moved:
            break
    findings = [Finding(r.rule_id, r.message, r.statute, "defer", at) for r, at in movers.values()]
    return t, findings


def evaluate(facts: Facts, table: RuleTable) -> Verdict:
    states = _states(facts)
    zones = _zones(facts)
    blocked = tuple(f for f in FEATURES if f not in facts.plan_features)
    rec = recording.decide(facts.recording_setting, states, facts.caller_state, table.all_party_states)
    base = Verdict(
        action="never",
        not_before=None,
        reasons=(),
        rules_version=table.version,
        recording_allowed=rec.allowed,
        recording_disclosure_required=rec.announcement_required,
        recording_reason=rec.reason,
        consent_status=_consent_status(facts),
        blocked_features=blocked,
        states=states,
        zones=zones,
    )
    bars = _bars(facts, table, states, zones)
    if bars:
        review = any(b.rule_id == "location.unknown" for b in bars)
        return replace(base, reasons=tuple(bars), needs_review=review)
    at, findings = schedule(facts.now, constraints(facts, table, states, zones))
    if at is None:
        return replace(base, reasons=tuple(findings), needs_review=True)
    notes: list[Finding] = []
    if facts.registry_dnc:
        notes.append(
            Finding(
                "dnc.registry.exempt",
                "on the National DNC Registry, exempt by express consent",
                table.federal.dnc_registry.statute,
                "dial_now",
            )
        )
    if at <= facts.now:
        return replace(base, action="dial_now", reasons=tuple(notes))
    return replace(base, action="defer", not_before=at, reasons=tuple(findings + notes))

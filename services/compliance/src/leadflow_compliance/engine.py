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

from leadflow_compliance import recording, state_gates
from leadflow_compliance.hours import day_kind, is_state_holiday, next_open, zone
from leadflow_compliance.phone import PhoneFacts
from leadflow_compliance.rule_table import DncList, R, Rule, RuleTable, StateRule, in_force
from leadflow_compliance.state_gates import GateFacts

Action = Literal["dial_now", "defer", "never"]
ReassignedAnswer = Literal["yes", "no", "no_data"]
FEATURES = ("auto_dial", "ai_enrichment", "crm_sync")
# No allowed instant this far ahead means something is wrong with the inputs: a person looks.
SEARCH_HORIZON = timedelta(days=30)
FULL_DAY = (time(0, 0), time(23, 59, 59, 999999))
SECONDARY_NOTE = "rests on a secondary source, not yet checked against the statute"


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
    # State DNC lists and registrations (state_gates.py). None: not gathered (pure tests of other
    # rules); the Decider always gathers them, so production never skips these gates.
    gates: GateFacts | None = None


@dataclass(frozen=True)
class Finding:
    rule_id: str
    message: str
    statute: str
    action: Action
    not_before: datetime | None = None
    # The rule behind this finding rests on a secondary source (the message says so too).
    secondary_source: bool = False
    # A person must look (a state list that cannot be checked, a missing registration).
    review: bool = False


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
    secondary_source: bool = False


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


def _gates(facts: Facts, table: RuleTable, states: tuple[str, ...], zones: tuple[str, ...]) -> list[Finding]:
    if facts.gates is None:
        return []

    def exempt(rule: DncList) -> str:
        if "prior_express_consent" in rule.exemptions and _consented(facts):
            return "exempt by prior express consent"
        days = table.federal.ebr.inquiry_days
        if "business_relationship" in rule.exemptions and _recent_inquiry(facts, days):
            return f"exempt by an inquiry within {days} days"
        return ""

    # The latest candidate local date: a duty taking effect binds as soon as it is in force anywhere.
    day = max(_local_dates(facts.now, zones))
    gates = state_gates.evaluate(table, states, day, facts.now, facts.gates, exempt)
    return [
        Finding(
            g.rule_id,
            g.message,
            g.statute,
            "never" if g.action == "never" else "dial_now",
            secondary_source=g.secondary_source,
            review=g.review,
        )
        for g in gates
    ]


def _consented(facts: Facts) -> bool:
    return facts.consent_at is not None and (facts.revoked_at is None or facts.consent_at > facts.revoked_at)


def _recent_inquiry(facts: Facts, days: int) -> bool:
    # A do-not-call request to the seller ends the relationship.
    return (
        facts.inquiry_at is not None
        and not facts.internal_dnc
        and facts.now - facts.inquiry_at <= timedelta(days=days)
    )


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


def _cite(rule: Rule) -> str:
    return f"{rule.statute} (effective {rule.effective})" if rule.effective else rule.statute


def _message(text: str, rule: Rule) -> str:
    return f"{text} ({SECONDARY_NOTE})" if rule.secondary_source else text


def _label_rule(versions: tuple[R, ...], day: date) -> R | None:
    """The version to name in a reason: the one in force, else the next to take effect."""
    return in_force(versions, day) or min(versions, key=lambda r: r.effective or date.min, default=None)


def _local_dates(t: datetime, zones: tuple[str, ...]) -> set[date]:
    """The callee's possible local dates at t (one per candidate zone)."""
    return {t.astimezone(zone(z)).date() for z in zones} or {t.date()}


def _local_date(t: datetime, zones: tuple[str, ...]) -> date:
    return min(_local_dates(t, zones))


def _state_constraints(facts: Facts, code: str, row: StateRule, zones: tuple[str, ...]) -> list[Constraint]:
    out: list[Constraint] = []
    today = _local_date(facts.now, zones)
    hours_label = _label_rule(row.calling_hours, today)
    if hours_label is not None:
        versions = row.calling_hours

        def hours_window(day: date) -> tuple[time, time] | None:
            rule = in_force(versions, day)
            return FULL_DAY if rule is None else rule.hours.window(day_kind(day))

        # A statute naming a fixed zone: the window must hold there as well as locally.
        extra = tuple(sorted({r.also_zone for r in versions if r.also_zone}))
        hours_zones = zones + extra
        out.append(
            Constraint(
                f"state.{code}.calling_hours",
                _message(f"outside {row.name}'s calling hours ({hours_label.describe()})", hours_label),
                _cite(hours_label),
                lambda t: next_open(t, hours_zones, hours_window),
                hours_label.secondary_source,
            )
        )
    ban_label = _label_rule(row.holiday_ban, today)
    if ban_label is not None:
        bans = row.holiday_ban

        def holiday_window(day: date) -> tuple[time, time] | None:
            rule = in_force(bans, day)
            if rule is not None and is_state_holiday(rule.calendar or code, day, rule.extra):
                return None
            return FULL_DAY

        out.append(
            Constraint(
                f"state.{code}.holiday",
                _message(f"{row.name} bans calls on its legal holidays", ban_label),
                _cite(ban_label),
                lambda t: next_open(t, zones, holiday_window),
                ban_label.secondary_source,
            )
        )
    cap_label = _label_rule(row.attempt_cap, today)
    if cap_label is not None:
        caps = row.attempt_cap
        ordered = sorted(facts.attempts)

        def cap_earliest(t: datetime) -> datetime:
            # Around an effective date the candidate zones may straddle it: every version that
            # could be in force must allow the attempt.
            rules = [in_force(caps, day) for day in _local_dates(t, zones)]
            return max(
                (_attempt_cap(ordered, r.max, timedelta(hours=r.window_hours))(t) for r in rules if r),
                default=t,
            )

        out.append(
            Constraint(
                f"state.{code}.attempt_cap",
                _message(
                    f"{row.name} allows {cap_label.max} contact attempt(s) ({cap_label.counts}) "
                    f"per {cap_label.window_hours} h",
                    cap_label,
                ),
                _cite(cap_label),
                cap_earliest,
                cap_label.secondary_source,
            )
        )
    return out


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
        if row is not None:
            out.extend(_state_constraints(facts, code, row, zones))
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
                return None, [
                    Finding(rule.rule_id, rule.message, rule.statute, "never", None, rule.secondary_source)
                ]
            if candidate > t:
                t, moved = candidate, True
                movers[rule.rule_id] = (rule, candidate)
        if not moved:
            break
    findings = [
        Finding(r.rule_id, r.message, r.statute, "defer", at, r.secondary_source) for r, at in movers.values()
    ]
    return t, findings


def secondary_notes(
    facts: Facts, table: RuleTable, states: tuple[str, ...], rules: Sequence[Constraint], reported: set[str]
) -> list[Finding]:
    """Say which secondary-source rows the decision leaned on without them moving it."""
    notes: list[Finding] = []
    for rule in rules:
        if rule.secondary_source and rule.rule_id not in reported:
            rule_id = f"{rule.rule_id}.secondary_source"
            notes.append(Finding(rule_id, rule.message, rule.statute, "dial_now", None, True))
    for code in states:
        row = table.states.get(code)
        # "No stricter state rule" is itself a finding, and may rest on weak evidence.
        if row is not None and row.finding and row.finding_secondary and not row.calling_hours:
            notes.append(
                Finding(
                    f"state.{code}.secondary_source",
                    f"{row.name}: {row.finding} ({SECONDARY_NOTE})",
                    "rules table review",
                    "dial_now",
                    None,
                    True,
                )
            )
    return notes


def evaluate(facts: Facts, table: RuleTable) -> Verdict:
    states = _states(facts)
    zones = _zones(facts)
    blocked = tuple(f for f in FEATURES if f not in facts.plan_features)
    # Unknown state: the strictest recording rule applies (recording.decide says so).
    rec = recording.decide(
        facts.recording_setting, states, facts.caller_state, table.all_party_states(facts.now.date())
    )
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
    gates = _gates(facts, table, states, zones)
    bars = _bars(facts, table, states, zones) + [g for g in gates if g.action == "never"]
    if bars:
        review = any(b.rule_id == "location.unknown" or b.review for b in bars)
        return replace(base, reasons=tuple(bars), needs_review=review)
    rules = constraints(facts, table, states, zones)
    at, findings = schedule(facts.now, rules)
    if at is None:
        return replace(base, reasons=tuple(findings), needs_review=True)
    notes = secondary_notes(facts, table, states, rules, {f.rule_id for f in findings})
    notes.extend(g for g in gates if g.action != "never")
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

"""Gathers the facts for one lead (storage, providers), runs the engine, builds the Decision."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from google.protobuf.json_format import MessageToDict

from leadflow.v1 import decision_pb2, lead_pb2, tenant_pb2
from leadflow_compliance import engine
from leadflow_compliance.consent_evidence import missing_evidence
from leadflow_compliance.phone import STATE_CODES, InvalidPhone, PhoneFacts, analyse
from leadflow_compliance.providers import ConsentProof, ReassignedNumbers
from leadflow_compliance.repository import PendingConsent, Repository, SubjectQuery, SubjectState
from leadflow_compliance.rule_table import RuleTable, parse_hhmm
from leadflow_compliance.state_gates import GateFacts
from leadflow_core.pii import subject_hash
from leadflow_core.timestamps import from_proto, to_proto

ACTIONS = {
    "dial_now": decision_pb2.DIAL_ACTION_DIAL_NOW,
    "defer": decision_pb2.DIAL_ACTION_DEFER,
    "never": decision_pb2.DIAL_ACTION_NEVER,
}
# The longest attempt-cap window in any rule table we ship is 24 h; a week leaves room.
ATTEMPT_LOOKBACK = timedelta(days=7)


def policy_of(tenant: tenant_pb2.Tenant) -> engine.Policy:
    p = tenant.policy
    start: time | None = parse_hhmm(p.window_start) if p.window_start else None
    end: time | None = parse_hhmm(p.window_end) if p.window_end else None
    return engine.Policy(
        consent_expiry_days=p.consent_expiry_days,
        window_start=start,
        window_end=end,
        fallback_timezone=p.fallback_timezone,
    )


def plan_features(tenant: tenant_pb2.Tenant) -> frozenset[str]:
    """A tenant applied without any plan gets every feature; a plan lists exactly what it has."""
    if not tenant.HasField("plan"):
        return frozenset(engine.FEATURES)
    return frozenset(tenant.plan.features)


def lead_phone(lead: lead_pb2.Lead) -> str:
    phone = lead.contact.phone
    return phone.e164 or phone.raw


# Where a lead without `campaign` names one (the direct API's and forms' custom field, Google's id).
CAMPAIGN_FIELDS = ("campaign", "campaign_id", "google.campaign_id")


def lead_campaign(lead: lead_pb2.Lead) -> str:
    """The lead's campaign (scopes a campaign-only revocation); custom fields for older senders."""
    if lead.campaign.strip():
        return lead.campaign.strip()[:200]
    for name in CAMPAIGN_FIELDS:
        value = lead.custom_fields.get(name, "").strip()
        if value:
            return value[:200]
    return ""


def email_subject_value(email: str) -> str:
    """What an email address is hashed as: prefixed, so it never collides with a number."""
    return "email:" + email.strip().lower()


def caller_state(tenant: tenant_pb2.Tenant) -> str | None:
    """The state of the tenant's caller-id number (its dialer's `from_number`), if known."""
    config = tenant.provider_configs.get("dialer") if "dialer" in tenant.provider_configs else None
    number = config.options.get("from_number", "") if config is not None else ""
    if not number:
        return None
    try:
        return analyse(number, "US").state
    except InvalidPhone:
        return None


def registrations(tenant: tenant_pb2.Tenant) -> dict[str, date | None]:
    """State -> the tenant's registration expiry there (None: no expiry recorded).

    An expiry that does not parse counts as expired long ago: the gate stays shut, not open."""
    out: dict[str, date | None] = {}
    for reg in tenant.policy.registrations:
        code = reg.state.strip().upper()
        try:
            expires = date.fromisoformat(reg.expires) if reg.expires else None
        except ValueError:
            expires = date.min
        if code in out:
            # Several rows for one state: the latest expiry wins (none recorded beats any date).
            known = out[code]
            expires = None if known is None or expires is None else max(known, expires)
        out[code] = expires
    return out


@dataclass(frozen=True)
class Outcome:
    verdict: engine.Verdict
    decision: decision_pb2.Decision
    phone: PhoneFacts
    subject: str
    # Consent evidence to store with the decision's audit record (ingest only).
    consent: PendingConsent | None = None


class Decider:
    def __init__(
        self,
        repo: Repository,
        table: RuleTable,
        pii_key: str,
        reassigned: ReassignedNumbers,
        proof: ConsentProof,
        pause_retry: timedelta,
    ) -> None:
        self.repo = repo
        self.table = table
        self.pii_key = pii_key
        self.reassigned = reassigned
        self.proof = proof
        self.pause_retry = pause_retry

    def subject(self, e164: str) -> str:
        return subject_hash(e164, self.pii_key)

    def _email_subjects(self, lead: lead_pb2.Lead) -> tuple[str, ...]:
        email = lead.contact.email
        return (self.subject(email_subject_value(email)),) if email.strip() else ()

    def query(
        self, tenant: tenant_pb2.Tenant, lead: lead_pb2.Lead, now: datetime, record_consent: bool
    ) -> SubjectQuery:
        """What `decide` reads about the lead's person (a batch reads them all at once).
        Raises phone.InvalidPhone for a number that cannot be parsed or is not valid."""
        phone = analyse(lead_phone(lead), tenant.policy.default_region or "US")
        given_at = _consent_given_at(lead, now)
        return SubjectQuery(
            tenant=tenant.name,
            subject=self.subject(phone.e164),
            national_number=phone.national_number,
            attempts_since=now - ATTEMPT_LOOKBACK,
            now=now,
            consent_check_at=given_at if record_consent else None,
            extra_subjects=self._email_subjects(lead),
            campaign=lead_campaign(lead),
        )

    def decide(
        self,
        tenant: tenant_pb2.Tenant,
        lead: lead_pb2.Lead,
        now: datetime,
        record_consent: bool,
        actor: str,
        state: SubjectState | None = None,
    ) -> Outcome:
        """`state`: what storage knows about the person, read already for `query(...)` with the
        same arguments (else read here). Raises phone.InvalidPhone for a number that cannot be
        parsed or is not valid."""
        phone = analyse(lead_phone(lead), tenant.policy.default_region or "US")
        subject = self.subject(phone.e164)
        evidence = lead.consent
        given_at = _consent_given_at(lead, now)
        missing = missing_evidence(evidence) if evidence.granted else ()
        if state is None:
            state = self.repo.subject_state(self.query(tenant, lead, now, record_consent))
        consent_at = state.consent_at
        other_seller = False
        proof_failure = ""
        pending: PendingConsent | None = None
        if evidence.granted:
            if given_at is not None:
                if not missing:
                    consent_at = given_at if consent_at is None else max(consent_at, given_at)
                if record_consent and not state.consent_on_file:
                    # Stored by the caller together with the audit record of this decision; consent
                    # without its evidence is kept as unverified and never counts for dialing.
                    pending = PendingConsent(
                        subject, given_at, _evidence_json(evidence), actor or "evaluate", verified=not missing
                    )
            other_seller = bool(evidence.seller) and evidence.seller not in (tenant.name, tenant.display_name)
            proof_failure = self.proof.verify(evidence.trustedform_cert_url, evidence.jornaya_leadid)
        reassigned: engine.ReassignedAnswer = "no_data"
        if consent_at is not None:
            reassigned = self.reassigned.check(phone.e164, consent_at.date())
        address = lead.contact.address
        address_state = address.state.strip().upper() if address.country.upper() in ("", "US", "USA") else ""
        if address_state not in STATE_CODES:
            address_state = ""
        # Only states whose rules keep a list are read (one small query, none for most leads).
        list_states = sorted(
            code for code in {phone.state, address_state} if code and code in self.table.states
            and self.table.states[code].dnc_list
        )  # fmt: skip
        on_lists, loaded = self.repo.state_dnc(list_states, phone.national_number)
        gates = GateFacts(on_lists=on_lists, lists_loaded=loaded, registrations=registrations(tenant))
        facts = engine.Facts(
            now=now,
            phone=phone,
            policy=policy_of(tenant),
            plan_features=plan_features(tenant),
            tenant_active=tenant.active,
            is_test=lead.is_test,
            address_state=address_state or None,
            consent_at=consent_at,
            consent_other_seller=other_seller,
            consent_proof_failure=proof_failure,
            reassigned=reassigned,
            revoked_at=state.revoked_at,
            internal_dnc=state.internal_dnc,
            registry_dnc=state.registry_dnc,
            inquiry_at=from_proto(lead.received_at),
            attempts=state.attempts,
            paused=tenant.paused,
            pause_retry=self.pause_retry,
            emergency_stop_until=state.emergency_stop_until,
            emergency_stop_reason=state.emergency_stop_reason,
            consent_unverified=missing,
            recording_setting=tenant.policy.recording,
            caller_state=caller_state(tenant),
            gates=gates,
        )
        verdict = engine.evaluate(facts, self.table)
        return Outcome(verdict, to_decision(verdict, now), phone, subject, pending)


def _consent_given_at(lead: lead_pb2.Lead, now: datetime) -> datetime | None:
    """When the lead's consent was given (None: not granted, or stamped in the future)."""
    evidence = lead.consent
    if not evidence.granted:
        return None
    given_at = from_proto(evidence.consented_at) or from_proto(lead.received_at) or now
    return None if given_at > now else given_at


def _evidence_json(evidence: lead_pb2.ConsentEvidence) -> dict[str, Any]:
    return MessageToDict(evidence, preserving_proto_field_name=True)


def reason(finding: engine.Finding) -> decision_pb2.Reason:
    r = decision_pb2.Reason(
        rule_id=finding.rule_id,
        message=finding.message,
        statute=finding.statute,
        action=ACTIONS[finding.action],
    )
    if finding.not_before is not None:
        r.not_before.CopyFrom(to_proto(finding.not_before))
    return r


def to_decision(verdict: engine.Verdict, now: datetime) -> decision_pb2.Decision:
    d = decision_pb2.Decision(
        decision_id=uuid.uuid4().hex,
        action=ACTIONS[verdict.action],
        reasons=[reason(f) for f in verdict.reasons],
        evaluated_at=to_proto(now),
        rules_version=verdict.rules_version,
        needs_review=verdict.needs_review,
        recording_allowed=verdict.recording_allowed,
        recording_disclosure_required=verdict.recording_disclosure_required,
        recording_reason=verdict.recording_reason,
        consent_status=verdict.consent_status,
        blocked_features=list(verdict.blocked_features),
    )
    if verdict.not_before is not None:
        d.not_before.CopyFrom(to_proto(verdict.not_before))
    return d


def defer(decision: decision_pb2.Decision, finding: engine.Finding) -> decision_pb2.Decision:
    """Turn an allowing decision into a deferral (a tenant limit hit at the final gate)."""
    out = decision_pb2.Decision()
    out.CopyFrom(decision)
    out.action = decision_pb2.DIAL_ACTION_DEFER
    if finding.not_before is not None:
        out.not_before.CopyFrom(to_proto(finding.not_before))
    out.reasons.append(reason(finding))
    return out

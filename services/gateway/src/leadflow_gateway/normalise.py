"""Build the one `Lead` message from mapped fields: names, E.164 phone, email, consent, urgency."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import phonenumbers

from leadflow.v1 import lead_pb2, tenant_pb2
from leadflow_core import timestamps
from leadflow_gateway import urgency
from leadflow_gateway.ascii_text import check_id, has_control, is_digits
from leadflow_gateway.errors import GatewayError, bad_request
from leadflow_gateway.fields import MappedFields

_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9\-]{1,63})+$"
)
MAX_CAMPAIGN = 255
_TRUE = {"true", "1", "yes", "y", "on", "checked", "agree", "agreed", "accepted", "x"}
_FALSE = {"false", "0", "no", "n", "off", "", "unchecked", "declined"}

_LINE_TYPES: dict[int, lead_pb2.LineType.ValueType] = {
    phonenumbers.PhoneNumberType.MOBILE: lead_pb2.LINE_TYPE_MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE: lead_pb2.LINE_TYPE_FIXED_LINE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE: lead_pb2.LINE_TYPE_FIXED_LINE_OR_MOBILE,
    phonenumbers.PhoneNumberType.VOIP: lead_pb2.LINE_TYPE_VOIP,
    phonenumbers.PhoneNumberType.TOLL_FREE: lead_pb2.LINE_TYPE_TOLL_FREE,
}


@dataclass
class Envelope:
    """What the request itself tells us beyond the body."""

    tenant: str
    source: lead_pb2.Source.ValueType
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    idempotency_key: str = ""
    vendor_lead_id: str = ""
    vendor_updated_at: datetime | None = None
    is_test: bool = False
    client_ip: str = ""
    user_agent: str = ""
    page_url: str = ""
    # Disclosure text the tenant configured for a form, when the form does not send it.
    disclosure_text: str = ""
    # Consent evidence a web form supplies itself: the seller it names (the tenant's own form) and
    # the id of this stored submission (consent_evidence.py in compliance needs one reference).
    seller: str = ""
    form_submission_id: str = ""
    # The sender's field names for its id and campaign, so a refusal names what it sent.
    vendor_lead_id_field: str = "vendor_lead_id"
    campaign: str = ""
    campaign_field: str = "campaign"


def parse_bool(value: str) -> bool | None:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


def parse_instant(value: str) -> datetime | None:
    """ISO 8601 (with or without zone; naive = UTC) or Unix seconds / milliseconds."""
    v = value.strip()
    # strptime's %Y and fromisoformat read "٢٠٢٤" as 2024: only ASCII text is an instant here.
    if not v or not v.isascii() or has_control(v):
        return None
    if is_digits(v) and len(v) <= 14:
        n = int(v)
        seconds = n / 1000 if n > 10**11 else n
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        # Meta's created_time: 2024-03-01T10:00:00+0000
        try:
            dt = datetime.strptime(v, "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            return None
    if not 1970 <= dt.year <= 2200:
        return None
    return timestamps.as_utc(dt)


def split_name(full: str) -> tuple[str, str]:
    parts = full.split()
    if not parts:
        return "", ""
    return parts[0], " ".join(parts[1:])


def normalise_email(value: str) -> str | None:
    """Lower-cased and trimmed; None when it is not an address (or carries control characters)."""
    v = value.strip().lower()
    return v if len(v) <= 254 and not has_control(v) and _EMAIL.fullmatch(v) else None


def normalise_phone(raw: str, default_region: str) -> lead_pb2.Phone | None:
    """E.164 with region and line type; None when it cannot be a phone number."""
    region = (default_region or "US").upper()
    # phonenumbers reads "²" or "٣" as digits; only ASCII ones are (and no control characters).
    if not raw.isascii() or has_control(raw):
        return None
    try:
        number = phonenumbers.parse(raw[:64], region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return lead_pb2.Phone(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        raw=raw,
        region=phonenumbers.region_code_for_number(number) or "",
        line_type=_LINE_TYPES.get(phonenumbers.number_type(number), lead_pb2.LINE_TYPE_OTHER),
    )


def tenant_rules(policy: tenant_pb2.TenantPolicy) -> tuple[urgency.Rule, ...]:
    return tuple(urgency.Rule(r.pattern, r.urgency) for r in policy.urgency_rules)


def build_lead(
    mapped: MappedFields,
    env: Envelope,
    policy: tenant_pb2.TenantPolicy,
    strict: bool,
    rules: Sequence[urgency.Rule] | None = None,
) -> lead_pb2.Lead:
    """Strict senders (our API, forms) get a 400 naming the bad field; vendor webhooks keep the
    lead with what could be understood (an unparsable phone leaves `e164` empty and compliance
    will not dial it), because refusing would only make the vendor retry the same body."""

    def fail(target: str, why: str) -> GatewayError:
        return bad_request(mapped.field_name(target), why)

    first, last, full = (mapped.get(k).strip() for k in ("first_name", "last_name", "full_name"))
    if full and not (first or last):
        first, last = split_name(full)
    elif not full:
        full = " ".join(p for p in (first, last) if p)
    contact = lead_pb2.Contact(first_name=first, last_name=last, full_name=full)

    raw_email = mapped.get("email")
    if raw_email:
        email = normalise_email(raw_email)
        if email is None and strict:
            raise fail("email", "not a valid email address")
        contact.email = email or ""

    raw_phone = mapped.get("phone").strip()
    if raw_phone:
        phone = normalise_phone(raw_phone, policy.default_region)
        if phone is None:
            if strict:
                raise fail("phone", "not a valid phone number")
            phone = lead_pb2.Phone(raw=raw_phone)
        contact.phone.CopyFrom(phone)
    elif strict:
        raise bad_request("phone", "a phone number is required")
    elif not raw_email:
        raise bad_request("phone", "a phone number or an email is required")

    address = {k: mapped.get(k).strip() for k in ("street", "city", "state", "postal_code", "country")}
    if any(address.values()):
        contact.address.CopyFrom(lead_pb2.Address(**address))

    lead = lead_pb2.Lead(
        tenant=env.tenant,
        source=env.source,
        vendor_lead_id=_vendor_id(mapped, env),
        idempotency_key=check_id("Idempotency-Key", env.idempotency_key),
        campaign=_campaign(mapped, env),
        contact=contact,
        message=mapped.get("message"),
        is_test=env.is_test,
    )
    lead.custom_fields.update(mapped.custom)
    lead.received_at.CopyFrom(timestamps.to_proto(env.received_at))
    if env.vendor_updated_at is not None:
        lead.vendor_updated_at.CopyFrom(timestamps.to_proto(env.vendor_updated_at))

    raw_test = mapped.get("is_test")
    if raw_test and parse_bool(raw_test):
        lead.is_test = True

    lead.consent.CopyFrom(_consent(mapped, env, strict, fail))

    raw_urgency = mapped.get("urgency")
    explicit = urgency.parse_explicit(raw_urgency) if raw_urgency else None
    if raw_urgency and explicit is None and strict:
        raise fail("urgency", "must be one of emergency, high, medium, low")
    if explicit is not None:
        lead.urgency = explicit
    else:
        words = [lead.message, *mapped.custom.values()]
        lead.urgency = urgency.classify(words, rules if rules is not None else tenant_rules(policy))
    return lead


def _vendor_id(mapped: MappedFields, env: Envelope) -> str:
    if mapped.get("vendor_lead_id"):
        value, name = mapped.get("vendor_lead_id"), mapped.field_name("vendor_lead_id")
    else:
        value, name = env.vendor_lead_id, env.vendor_lead_id_field
    return check_id(name, value).strip()[:256]


def _campaign(mapped: MappedFields, env: Envelope) -> str:
    if mapped.get("campaign"):
        value, name = mapped.get("campaign"), mapped.field_name("campaign")
    else:
        value, name = env.campaign, env.campaign_field
    return check_id(name, value).strip()[:MAX_CAMPAIGN]


def _consent(
    mapped: MappedFields,
    env: Envelope,
    strict: bool,
    fail: Callable[[str, str], GatewayError],
) -> lead_pb2.ConsentEvidence:
    consent = lead_pb2.ConsentEvidence()
    raw_granted = mapped.get("consent.granted")
    if raw_granted:
        granted = parse_bool(raw_granted)
        if granted is None and strict:
            raise fail("consent.granted", "must be true or false")
        consent.granted = bool(granted)
    consent.disclosure_text = mapped.get("consent.disclosure_text") or env.disclosure_text
    raw_at = mapped.get("consent.consented_at")
    at = parse_instant(raw_at) if raw_at else None
    if raw_at and at is None and strict:
        raise fail("consent.consented_at", "not an ISO 8601 instant")
    if at is None and consent.granted:
        # The box was ticked in the request we are holding: its arrival is the consent instant.
        at = env.received_at
    if at is not None:
        consent.consented_at.CopyFrom(timestamps.to_proto(at))
    consent.page_url = (mapped.get("consent.page_url") or env.page_url)[:2000]
    consent.ip = (mapped.get("consent.ip") or env.client_ip)[:64]
    consent.user_agent = (mapped.get("consent.user_agent") or env.user_agent)[:1000]
    consent.trustedform_cert_url = mapped.get("consent.trustedform_cert_url").strip()
    consent.jornaya_leadid = mapped.get("consent.jornaya_leadid").strip()
    consent.seller = (mapped.get("consent.seller").strip() or env.seller)[:200]
    consent.disclosure_version = mapped.get("consent.disclosure_version").strip()[:200]
    submission = mapped.get("consent.form_submission_id").strip() or env.form_submission_id
    consent.form_submission_id = submission[:200]
    return consent

"""Merging a repeat lead of one person and campaign into the stored one (pure, no I/O).

The newer submission's fields win where it has a value (a vendor stamp older than the stored
one's makes it the older); the earliest consent evidence is kept whole, never mixed, because
evidence is only worth something as recorded at the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from leadflow.v1 import lead_pb2
from leadflow_core.timestamps import from_proto

# Contact fields copied when the newer lead has a value.
_CONTACT = ("first_name", "last_name", "full_name", "email")
_ADDRESS = ("street", "city", "state", "postal_code", "country")


@dataclass(frozen=True)
class Merged:
    lead: lead_pb2.Lead
    # Names of the fields the newer lead changed (never their values: they may be PII).
    changed: list[str]
    # "kept" (the stored evidence was earlier or the newer lead had none) or "replaced".
    consent: str


def evidence_level(consent: lead_pb2.ConsentEvidence) -> int:
    """2: consent given with a reference that proves it (TrustedForm, LeadiD, the stored form
    submission); 1: a claim or a disclosure only; 0: nothing."""
    if consent.granted and (
        consent.trustedform_cert_url or consent.jornaya_leadid or consent.form_submission_id
    ):
        return 2
    if consent.granted or consent.disclosure_text or consent.disclosure_version:
        return 1
    return 0


def _consented_at(consent: lead_pb2.ConsentEvidence) -> datetime | None:
    return from_proto(consent.consented_at) if consent.HasField("consented_at") else None


def newer_consent_wins(stored: lead_pb2.ConsentEvidence, newer: lead_pb2.ConsentEvidence) -> bool:
    """Whether `newer` holds the evidence to keep: better evidence wins (a proof over a bare
    claim); between equals, the earliest, and evidence without a time counts as later than any
    with one; on a tie the stored evidence stays."""
    a_level, b_level = evidence_level(stored), evidence_level(newer)
    if a_level != b_level:
        return b_level > a_level
    if b_level == 0:
        return False
    a, b = _consented_at(stored), _consented_at(newer)
    return b is not None and (a is None or b < a)


def merge_leads(stored: lead_pb2.Lead, incoming: lead_pb2.Lead) -> Merged:
    """`stored` updated with `incoming`; identity (lead id, tenant, source, ids) stays the stored one's."""
    old_stamp = from_proto(stored.vendor_updated_at) if stored.HasField("vendor_updated_at") else None
    new_stamp = from_proto(incoming.vendor_updated_at) if incoming.HasField("vendor_updated_at") else None
    incoming_is_newer = not (old_stamp and new_stamp and new_stamp < old_stamp)
    older, newer = (stored, incoming) if incoming_is_newer else (incoming, stored)

    out = lead_pb2.Lead()
    out.CopyFrom(stored)
    changed: list[str] = []

    def take(name: str, value: str, current: str, setter: object) -> None:
        if value and value != current:
            changed.append(name)
            setattr(setter, name.rsplit(".", 1)[-1], value)

    for name in _CONTACT:
        value = getattr(newer.contact, name) or getattr(older.contact, name)
        take(f"contact.{name}", value, getattr(out.contact, name), out.contact)
    phone = newer.contact.phone if newer.contact.phone.e164 else older.contact.phone
    if phone.e164 and phone.e164 != out.contact.phone.e164:
        changed.append("contact.phone")
        out.contact.phone.CopyFrom(phone)
    for name in _ADDRESS:
        value = getattr(newer.contact.address, name) or getattr(older.contact.address, name)
        take(f"contact.address.{name}", value, getattr(out.contact.address, name), out.contact.address)
    message = newer.message or older.message
    if message and message != out.message:
        changed.append("message")
        out.message = message
    custom = dict(older.custom_fields)
    custom.update(newer.custom_fields)
    if custom != dict(out.custom_fields):
        changed.append("custom_fields")
        out.custom_fields.clear()
        out.custom_fields.update(custom)
    if newer.urgency and newer.urgency != out.urgency:
        changed.append("urgency")
        out.urgency = newer.urgency
    if incoming_is_newer and new_stamp is not None:
        out.vendor_updated_at.CopyFrom(incoming.vendor_updated_at)
    replaced = newer_consent_wins(stored.consent, incoming.consent)
    if replaced:
        changed.append("consent")
        out.consent.CopyFrom(incoming.consent)
    return Merged(out, changed, "replaced" if replaced else "kept")

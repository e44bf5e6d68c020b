"""Map a sender's flat fields onto Lead field names, with per-source aliases and the tenant's map."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from leadflow_gateway.ascii_text import has_control, printable_name
from leadflow_gateway.errors import bad_request

# The Lead fields a sender's field can land in (SourceConfig.field_map values).
TARGETS = frozenset(
    {
        "first_name",
        "last_name",
        "full_name",
        "email",
        "phone",
        "message",
        "urgency",
        "vendor_lead_id",
        "campaign",
        "street",
        "city",
        "state",
        "postal_code",
        "country",
        "is_test",
        "consent.granted",
        "consent.disclosure_text",
        "consent.consented_at",
        "consent.page_url",
        "consent.ip",
        "consent.user_agent",
        "consent.trustedform_cert_url",
        "consent.jornaya_leadid",
        "consent.seller",
        "consent.disclosure_version",
        "consent.form_submission_id",
    }
)
IGNORE = "ignore"
# Fields whose text may run over lines; custom fields too. No field may hold any other control
# character: a NUL would reach PostgreSQL (which refuses it) only after the sender had its 202.
FREE_TEXT = frozenset({"message", "street", "consent.disclosure_text"})
MAX_VALUE_CHARS = 4000
MAX_CUSTOM_FIELDS = 100
MAX_KEY_CHARS = 100

# Names any sender may use (lower-cased); a source adds its own vendor names on top.
COMMON_ALIASES: dict[str, str] = {
    "first_name": "first_name",
    "firstname": "first_name",
    "given_name": "first_name",
    "last_name": "last_name",
    "lastname": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "name": "full_name",
    "full_name": "full_name",
    "fullname": "full_name",
    "email": "email",
    "email_address": "email",
    "phone": "phone",
    "phone_number": "phone",
    "phonenumber": "phone",
    "mobile": "phone",
    "mobile_phone": "phone",
    "telephone": "phone",
    "tel": "phone",
    "message": "message",
    "comments": "message",
    "comment": "message",
    "notes": "message",
    "description": "message",
    "urgency": "urgency",
    "campaign": "campaign",
    "campaign_id": "campaign",
    "campaign_name": "campaign",
    "utm_campaign": "campaign",
    "street": "street",
    "address": "street",
    "street_address": "street",
    "city": "city",
    "state": "state",
    "region": "state",
    "zip": "postal_code",
    "zip_code": "postal_code",
    "postal_code": "postal_code",
    "postcode": "postal_code",
    "country": "country",
    "consent": "consent.granted",
    "tcpa_consent": "consent.granted",
    "consent_text": "consent.disclosure_text",
    "disclosure_text": "consent.disclosure_text",
    "consented_at": "consent.consented_at",
    "page_url": "consent.page_url",
    "xxtrustedformcerturl": "consent.trustedform_cert_url",
    "trustedform_cert_url": "consent.trustedform_cert_url",
    "leadid_token": "consent.jornaya_leadid",
    "universal_leadid": "consent.jornaya_leadid",
    "jornaya_leadid": "consent.jornaya_leadid",
    "disclosure_version": "consent.disclosure_version",
    "form_submission_id": "consent.form_submission_id",
}


def canonical_target(path: str) -> str | None:
    """`contact.first_name`, `contact.phone.raw`, `custom_fields.x` ... -> our name; None if unknown."""
    p = path.strip()
    if p == IGNORE:
        return IGNORE
    for prefix in ("custom_fields.", "custom."):
        if p.startswith(prefix) and len(p) > len(prefix):
            return "custom." + p[len(prefix) :]
    p = p.removeprefix("contact.").removeprefix("address.").removeprefix("lead.")
    p = {"phone.raw": "phone", "phone.e164": "phone"}.get(p, p)
    return p if p in TARGETS else None


@dataclass
class MappedFields:
    """Known Lead fields (target -> value) plus everything else as custom fields."""

    values: dict[str, str] = field(default_factory=dict)
    custom: dict[str, str] = field(default_factory=dict)
    # target -> the sender's field name, so a 400 names the field the sender wrote.
    origin: dict[str, str] = field(default_factory=dict)

    def set(self, target: str, value: str, origin: str) -> None:
        refuse_controls(origin, value, text=target in FREE_TEXT or target.startswith("custom."))
        value = value[:MAX_VALUE_CHARS]
        if target.startswith("custom."):
            self.add_custom(target[len("custom.") :], value)
        elif value.strip() and not self.values.get(target, "").strip():
            self.values[target] = value
            self.origin[target] = origin

    def add_custom(self, key: str, value: str) -> None:
        refuse_controls(key, key)
        refuse_controls(key, value, text=True)
        if len(self.custom) < MAX_CUSTOM_FIELDS and key:
            self.custom[key[:MAX_KEY_CHARS]] = value[:MAX_VALUE_CHARS]

    def get(self, target: str) -> str:
        return self.values.get(target, "")

    def field_name(self, target: str) -> str:
        return self.origin.get(target, target)


def refuse_controls(name: str, value: str, text: bool = False) -> None:
    """A 400 naming the field (never quoting the value: it may be a phone number or an email)."""
    if has_control(value, text=text):
        allowed = " other than tab and line breaks" if text else ""
        raise bad_request(printable_name(name), f"must not contain NUL or other control characters{allowed}")


def map_fields(
    items: Iterable[tuple[str, str]],
    aliases: Mapping[str, str],
    field_map: Mapping[str, str],
    skip: Iterable[str] = (),
) -> MappedFields:
    """The tenant's `field_map` wins over the source's aliases, which win over the common ones."""
    skipped = set(skip)
    out = MappedFields()
    for key, value in items:
        if key in skipped:
            continue
        target: str | None = None
        if key in field_map:
            target = canonical_target(field_map[key])
        if target is None:
            lowered = key.strip().lower()
            target = aliases.get(lowered) or COMMON_ALIASES.get(lowered)
        if target == IGNORE:
            continue
        if target is None:
            out.add_custom(key, value)
        else:
            out.set(target, value, key)
    return out


def flatten(value: object, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """A JSON document as (dotted key, text) pairs; lists of scalars are joined with ', '."""
    if depth > 8:
        return []
    if isinstance(value, dict):
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out.extend(flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1))
        return out
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [(prefix, ", ".join(_scalar(v) for v in value))] if prefix else []
        out = []
        for i, v in enumerate(value):
            out.extend(flatten(v, f"{prefix}.{i}" if prefix else str(i), depth + 1))
        return out
    return [(prefix, _scalar(value))] if prefix else []


def _scalar(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

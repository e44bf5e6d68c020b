"""Error text about a lead, stripped of that lead's personal data before it is stored.

A worker's error can quote what it choked on: a database error quoting a value, a provider's
answer echoing a field. Phone numbers and emails are caught by pattern (leadflow_core.pii.scrub);
names, streets and free text are not patterns, so the lead's own values are removed by equality
(case-insensitive) first."""

from __future__ import annotations

import re

from leadflow.v1 import lead_pb2
from leadflow_core.pii import scrub

REDACTED = "[redacted]"
# Shorter values ("Al", "NY") are too likely to hit unrelated words to be removed everywhere.
_MIN_CHARS = 3


def personal_values(lead: lead_pb2.Lead) -> list[str]:
    c = lead.contact
    values = [
        c.first_name,
        c.last_name,
        c.full_name,
        c.email,
        c.phone.e164,
        c.phone.raw,
        c.address.street,
        c.address.city,
        c.address.postal_code,
        lead.message,
        lead.consent.ip,
        *lead.custom_fields.values(),
    ]
    found = {v.strip() for v in values if len(v.strip()) >= _MIN_CHARS}
    # Longest first, so a full name goes before the first name inside it.
    return sorted(found, key=len, reverse=True)


def redact(text: str, lead: lead_pb2.Lead | None) -> str:
    if not text:
        return text
    if lead is not None:
        for value in personal_values(lead):
            text = re.sub(re.escape(value), REDACTED, text, flags=re.IGNORECASE)
    return scrub(text)

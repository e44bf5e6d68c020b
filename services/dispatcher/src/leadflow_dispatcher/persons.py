""" "The same person": tenant plus phone or email, as keyed hashes (never the values in clear).

The person key of a lead is its normalised email (lower-cased, trimmed) when it has one, else
its E.164 phone; with the campaign it makes the order key, the scope in which a person's leads
merge and their work runs in arrival order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from leadflow.v1 import lead_pb2
from leadflow_core.pii import subject_hash

MAX_CAMPAIGN = 255


@dataclass(frozen=True)
class PersonKeys:
    phone: str | None
    email: str | None

    @property
    def any(self) -> bool:
        return bool(self.phone or self.email)

    @property
    def person(self) -> str | None:
        """The one key of this person: the email's hash, else the phone's."""
        return self.email or self.phone

    def lock_id(self) -> int:
        """A 63-bit number for a PostgreSQL advisory lock serialising leads about this person."""
        basis = self.phone or self.email or ""
        return int(basis[:15] or "0", 16)

    def lock_ids(self) -> list[int]:
        """One advisory lock per key, in a fixed order (no deadlock between two submits): a lead
        sharing only its email, or only its phone, with another still waits for it."""
        return sorted({int(k[:15], 16) for k in (self.phone, self.email) if k})

    def order_key(self, campaign: str) -> str | None:
        """(person, campaign) as one opaque key; None without a person key."""
        person = self.person
        if person is None:
            return None
        return hashlib.sha256(f"{person}|{campaign}".encode()).hexdigest()[:32]


def normalised_email(lead: lead_pb2.Lead) -> str:
    return lead.contact.email.strip().lower()


def normalised_phone(lead: lead_pb2.Lead) -> str:
    return lead.contact.phone.e164.strip()


def campaign_of(lead: lead_pb2.Lead) -> str:
    return lead.campaign.strip()[:MAX_CAMPAIGN]


def person_keys(lead: lead_pb2.Lead, hash_key: str) -> PersonKeys:
    phone = normalised_phone(lead)
    email = normalised_email(lead)
    # The tenant is part of the hashed value: one tenant's keys never match another's.
    return PersonKeys(
        phone=subject_hash(f"{lead.tenant}|{phone}", hash_key) if phone else None,
        email=subject_hash(f"{lead.tenant}|{email}", hash_key) if email else None,
    )

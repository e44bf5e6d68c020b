""" "The same person": tenant plus phone or email, as keyed hashes (never the values in clear)."""

from __future__ import annotations

from dataclasses import dataclass

from leadflow.v1 import lead_pb2
from leadflow_core.pii import subject_hash


@dataclass(frozen=True)
class PersonKeys:
    phone: str | None
    email: str | None

    @property
    def any(self) -> bool:
        return bool(self.phone or self.email)

    def lock_id(self) -> int:
        """A 63-bit number for a PostgreSQL advisory lock serialising leads about this person."""
        basis = self.phone or self.email or ""
        return int(basis[:15] or "0", 16)


def person_keys(lead: lead_pb2.Lead, hash_key: str) -> PersonKeys:
    phone = lead.contact.phone.e164.strip()
    email = lead.contact.email.strip().lower()
    # The tenant is part of the hashed value: one tenant's keys never match another's.
    return PersonKeys(
        phone=subject_hash(f"{lead.tenant}|{phone}", hash_key) if phone else None,
        email=subject_hash(f"{lead.tenant}|{email}", hash_key) if email else None,
    )

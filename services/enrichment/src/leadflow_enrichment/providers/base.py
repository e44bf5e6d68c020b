"""The provider interfaces the actors call. Implementations raise `ProviderError` on failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class LeadView:
    """What a provider may see of a lead (fetched from the dispatcher by the actor)."""

    tenant: str
    lead_id: str
    source: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    phone_e164: str = ""
    urgency: str = "medium"
    message: str = ""
    state: str = ""
    postal_code: str = ""
    vendor_lead_id: str = ""
    custom_fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Enrichment:
    intent: str  # "high" | "medium" | "low"
    fit_score: int  # 0..100; 50 is neutral
    reasons: tuple[str, ...] = ()
    model: str = ""
    fallback: bool = False  # True when the provider failed and the neutral score was used


@dataclass(frozen=True)
class CrmResult:
    external_id: str
    created: bool


@dataclass(frozen=True)
class CallRequest:
    attempt_id: str  # idempotency: the provider call carries it
    tenant: str
    lead_id: str
    to_e164: str
    from_number: str
    status_callback_url: str
    record: bool = False
    recording_disclosure: bool = False


@dataclass(frozen=True)
class CallHandle:
    provider_call_id: str
    status: str  # Twilio vocabulary: queued, ringing, in-progress, completed, busy, ...


@dataclass(frozen=True)
class CallStatus:
    provider_call_id: str
    status: str
    duration_seconds: int = 0
    price_usd: str = ""


class Scorer(Protocol):
    name: str

    def score(self, lead: LeadView) -> Enrichment: ...


class Crm(Protocol):
    """Writes are upserts keyed by the lead id, so a repeated write never makes a second record;
    `find_lead` looks that key up, so a retry can see an earlier write landed and not write again."""

    name: str

    def find_lead(self, lead: LeadView) -> CrmResult | None: ...

    def upsert_lead(self, lead: LeadView, enrichment: Enrichment | None) -> CrmResult: ...


class Dialer(Protocol):
    name: str

    def place_call(self, request: CallRequest) -> CallHandle: ...

    def fetch_status(self, provider_call_id: str) -> CallStatus: ...

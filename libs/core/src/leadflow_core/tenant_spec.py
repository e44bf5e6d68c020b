"""The `Tenant` resource's spec (the Kubernetes shape of DESIGN.md) and its mapping to the proto.

The `leadflow` CLI and the kopf operator both apply tenants through this one mapping, so a YAML
that works with `kubectl apply` works with `leadflow tenant apply` too.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadflow.v1 import lead_pb2, tenant_pb2
from leadflow_core.tenant_vocab import REGIONS, TIMEZONES

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SOURCE_NAMES = (
    "meta", "hubspot", "salesforce", "zapier", "marketo", "google", "form", "api", "calls",
    # Inbound replies that may revoke consent: Twilio Messaging webhooks, signed email webhooks.
    "sms", "email",
)  # fmt: skip
Feature = Literal["auto_dial", "ai_enrichment", "crm_sync"]
FEATURES: tuple[Feature, ...] = ("auto_dial", "ai_enrichment", "crm_sync")
# The CRD's patterns: 00:00-23:59, and 24:00 (midnight) only as a window's end.
WINDOW_START_PATTERN = r"^$|^([01][0-9]|2[0-3]):[0-5][0-9]$"
WINDOW_END_PATTERN = r"^$|^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"
MAX_DAILY_USD = Decimal(1_000_000)
# Provider types per kind (the CRD's enums; services/enrichment's registry implements them).
PROVIDER_TYPES: dict[str, tuple[str, ...]] = {
    "crm": ("local", "salesforce", "hubspot"),
    "dialer": ("simulator", "twilio"),
    "llm": ("rules", "openai"),
}
_REGION_SET = frozenset(REGIONS)
_ZONE_SET = frozenset(TIMEZONES)
URGENCY_VALUES = {
    "emergency": lead_pb2.URGENCY_EMERGENCY,
    "high": lead_pb2.URGENCY_HIGH,
    "medium": lead_pb2.URGENCY_MEDIUM,
    "low": lead_pb2.URGENCY_LOW,
}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Limits(_Spec):
    calls_per_minute: int = Field(10, ge=0, le=100_000, alias="callsPerMinute")
    calls_per_hour: int = Field(100, ge=0, le=1_000_000, alias="callsPerHour")
    calls_per_day: int = Field(1000, ge=0, le=10_000_000, alias="callsPerDay")
    concurrent_calls: int = Field(5, ge=0, le=10_000, alias="concurrentCalls")
    priority_boost_percent: int = Field(20, ge=0, le=100, alias="priorityBoostPercent")


class Budget(_Spec):
    daily_usd: str = Field("100.00", alias="dailyUsd")

    @field_validator("daily_usd", mode="before")
    @classmethod
    def _decimal(cls, v: object) -> str:
        # A whole number is fine (YAML `100` or an unquoted `100.00`, which kubectl sends as 100);
        # a float with a fraction is refused: it may already have lost cents.
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ValueError('dailyUsd must be written as a quoted decimal string, e.g. "100.00"')
        try:
            d = Decimal(v)
        except InvalidOperation as err:
            raise ValueError("dailyUsd must be a decimal number of dollars, e.g. '100.00'") from err
        if not d.is_finite() or d < 0:  # NaN cannot be compared
            raise ValueError("dailyUsd must not be negative")
        if d > MAX_DAILY_USD:
            raise ValueError(f"dailyUsd must be at most {MAX_DAILY_USD}")
        if d != d.quantize(Decimal("0.01")):
            raise ValueError("dailyUsd has at most 2 decimals (cents)")
        return f"{d:.2f}"


class SecretRef(_Spec):
    name: str
    # One key: it becomes the source's main secret. No key: every key of the Secret is used.
    key: str | None = None


class Source(_Spec):
    enabled: bool = True
    secret_ref: SecretRef | None = Field(None, alias="secretRef")
    # Non-secret settings (allowed org ids, allowed origins, header names ...).
    options: dict[str, str] = Field(default_factory=dict)
    field_map: dict[str, str] = Field(default_factory=dict, alias="fieldMap")
    # CIDR networks the sender posts from (Salesforce publishes its ranges); empty = anywhere.
    allowed_source_ranges: list[str] = Field(
        default_factory=list, alias="allowedSourceRanges", max_length=100
    )

    @field_validator("allowed_source_ranges")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as err:
                raise ValueError(f"allowedSourceRanges: {item!r} is not a CIDR network") from err
        return v


class UrgencyRule(_Spec):
    pattern: str
    urgency: Literal["emergency", "high", "medium", "low"]


class Registration(_Spec):
    """A state registration or licence the seller holds (compliance state_gates.py reads it)."""

    state: str = Field(pattern=r"^[A-Z]{2}$")
    id: str = Field("", max_length=100)
    # Last valid day; None = no expiry recorded.
    expires: date | None = None


class Policy(_Spec):
    default_region: str = Field("US", alias="defaultRegion", min_length=2, max_length=2)
    consent_expiry_days: int = Field(0, ge=0, le=3650, alias="consentExpiryDays")
    window_start: str = Field("", alias="windowStart", pattern=WINDOW_START_PATTERN)
    window_end: str = Field("", alias="windowEnd", pattern=WINDOW_END_PATTERN)
    fallback_timezone: str = Field("", alias="fallbackTimezone", max_length=64)
    urgency_rules: list[UrgencyRule] = Field(default_factory=list, alias="urgencyRules")
    dial_delay_seconds: dict[Literal["emergency", "high", "medium", "low"], int] = Field(
        default_factory=dict, alias="dialDelaySeconds"
    )
    max_dial_attempts: int = Field(3, ge=1, le=20, alias="maxDialAttempts")
    retry_backoff_seconds: int = Field(600, ge=0, le=86_400, alias="retryBackoffSeconds")
    # Call recording by setting and by law (compliance recording.py); off unless chosen.
    recording: Literal["never", "one_party_states_only", "always_with_announcement"] = "never"
    # What an opt-out revokes: every campaign of the tenant, or only the one it answered.
    revocation_scope: Literal["all_campaigns", "campaign"] = Field("all_campaigns", alias="revocationScope")
    # Leads of one person and campaign within this window merge; None = the deployment's
    # default (24 h), 0 = never merge.
    merge_window_seconds: int | None = Field(None, ge=0, le=30 * 86_400, alias="mergeWindowSeconds")
    # Days the inbound request log keeps this tenant's webhook requests (the dispatcher's sweeper
    # deletes older ones); replay reaches back only this far.
    request_log_retention_days: int = Field(7, ge=1, le=90, alias="requestLogRetentionDays")
    # States where the seller is registered; a state whose rules make registration a gate on
    # calling is not called without an unexpired entry here.
    registrations: list[Registration] = Field(default_factory=list)

    @field_validator("default_region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v.upper() not in _REGION_SET:
            raise ValueError("defaultRegion must be an ISO 3166-1 alpha-2 code such as US")
        return v.upper()

    @field_validator("fallback_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        if v and v not in _ZONE_SET:
            raise ValueError("fallbackTimezone must be an IANA time zone name such as America/New_York")
        return v


class Plan(_Spec):
    name: str = "standard"
    features: list[Feature] = Field(default_factory=lambda: list(FEATURES))


class Provider(_Spec):
    # Which types each kind takes: PROVIDER_TYPES (checked on TenantSpec, which knows the kind).
    type: Literal["local", "salesforce", "hubspot", "simulator", "twilio", "rules", "openai"]
    secret_ref: SecretRef | None = Field(None, alias="secretRef")
    options: dict[str, str] = Field(default_factory=dict)


# Events a tenant may receive at its own endpoints (signed per Standard Webhooks).
EVENT_TYPES: Final = ("lead.stored", "lead.refused", "call.placed", "call.completed", "lead.dead_lettered")
EVENT_ENDPOINT_NAME = r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$"


class EventEndpoint(_Spec):
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    events: list[
        Literal["lead.stored", "lead.refused", "call.placed", "call.completed", "lead.dead_lettered"]
    ] = Field(min_length=1, max_length=len(EVENT_TYPES))
    # The signing secret, `whsec_<base64>` (the Secret's `key`, or its key named `secret`).
    secret_ref: SecretRef = Field(alias="secretRef")


def event_endpoint_kind(name: str) -> str:
    """The provider config an endpoint is stored as: its secret is sealed like a provider's."""
    return f"events.{name}"


class TenantSpec(_Spec):
    display_name: str = Field("", alias="displayName", max_length=200)
    paused: bool = False
    limits: Limits = Field(default_factory=Limits)  # type: ignore[arg-type]
    budget: Budget = Field(default_factory=Budget)  # type: ignore[arg-type]
    sources: dict[str, Source] = Field(default_factory=dict)
    policy: Policy = Field(default_factory=Policy)  # type: ignore[arg-type]
    plan: Plan = Field(default_factory=Plan)
    providers: dict[Literal["crm", "dialer", "llm"], Provider] = Field(default_factory=dict)
    event_endpoints: dict[str, EventEndpoint] = Field(
        default_factory=dict, alias="eventEndpoints", max_length=10
    )

    @field_validator("event_endpoints")
    @classmethod
    def _endpoint_names(cls, v: dict[str, EventEndpoint]) -> dict[str, EventEndpoint]:
        bad = sorted(n for n in v if not re.match(EVENT_ENDPOINT_NAME, n))
        if bad:
            raise ValueError(
                f"event endpoint name(s) {bad} must be lower-case letters, digits and '-' (1-40)"
            )
        return v

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, v: dict[str, Source]) -> dict[str, Source]:
        unknown = sorted(set(v) - set(SOURCE_NAMES))
        if unknown:
            raise ValueError(f"unknown source(s) {unknown}; known: {list(SOURCE_NAMES)}")
        return v

    @model_validator(mode="after")
    def _provider_types(self) -> TenantSpec:
        for kind, provider in self.providers.items():
            if provider.type not in PROVIDER_TYPES[kind]:
                raise ValueError(
                    f"providers.{kind}.type {provider.type!r} is not a {kind} provider; "
                    f"expected one of {list(PROVIDER_TYPES[kind])}"
                )
        return self


def is_hhmm(value: str, *, end: bool = False) -> bool:
    """A window time: 00:00-23:59, and 24:00 (midnight) when it ends a window."""
    return (
        bool(value) and re.fullmatch(WINDOW_END_PATTERN if end else WINDOW_START_PATTERN, value) is not None
    )


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"tenant name {name!r} must be a DNS-1123 label (lower-case letters, digits, '-')")
    return name


def snake(key: str) -> str:
    """appSecret -> app_secret, so Secret keys in either style name the same secret."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def to_proto(
    name: str, spec: TenantSpec, secrets: dict[str, dict[str, str]] | None = None
) -> tenant_pb2.Tenant:
    """Build the Tenant message.

    `secrets` maps a source name (or "provider:<kind>") to the values its secretRef resolved to.
    """
    validate_name(name)
    secrets = secrets or {}
    tenant = tenant_pb2.Tenant(
        name=name,
        display_name=spec.display_name or name,
        paused=spec.paused,
        active=True,
        limits=tenant_pb2.TenantLimits(
            calls_per_minute=spec.limits.calls_per_minute,
            calls_per_hour=spec.limits.calls_per_hour,
            calls_per_day=spec.limits.calls_per_day,
            concurrent_calls=spec.limits.concurrent_calls,
            priority_boost_percent=spec.limits.priority_boost_percent,
        ),
        budget=tenant_pb2.TenantBudget(daily_usd=spec.budget.daily_usd),
        policy=tenant_pb2.TenantPolicy(
            default_region=spec.policy.default_region.upper(),
            consent_expiry_days=spec.policy.consent_expiry_days,
            window_start=spec.policy.window_start,
            window_end=spec.policy.window_end,
            fallback_timezone=spec.policy.fallback_timezone,
            urgency_rules=[
                tenant_pb2.UrgencyRule(pattern=r.pattern, urgency=URGENCY_VALUES[r.urgency])
                for r in spec.policy.urgency_rules
            ],
            dial_delay_seconds={str(k): v for k, v in spec.policy.dial_delay_seconds.items()},
            max_dial_attempts=spec.policy.max_dial_attempts,
            retry_backoff_seconds=spec.policy.retry_backoff_seconds,
            recording=spec.policy.recording,
            revocation_scope=spec.policy.revocation_scope,
            merge_window_seconds=spec.policy.merge_window_seconds,
            request_log_retention_days=spec.policy.request_log_retention_days,
            registrations=[
                tenant_pb2.StateRegistration(
                    state=r.state, id=r.id, expires=r.expires.isoformat() if r.expires else ""
                )
                for r in spec.policy.registrations
            ],
        ),
        plan=tenant_pb2.TenantPlan(name=spec.plan.name, features=list(spec.plan.features)),
        providers={kind: p.type for kind, p in spec.providers.items()},
    )
    for kind, provider in spec.providers.items():
        pcfg = tenant.provider_configs[kind]
        pcfg.options.update(provider.options)
        pcfg.secrets.update({snake(k): v for k, v in secrets.get(f"provider:{kind}", {}).items()})
    for endpoint_name, endpoint in spec.event_endpoints.items():
        endpoint_kind = event_endpoint_kind(endpoint_name)
        ecfg = tenant.provider_configs[endpoint_kind]
        ecfg.options.update({"url": endpoint.url, "events": ",".join(sorted(set(endpoint.events)))})
        ecfg.secrets.update({snake(k): v for k, v in secrets.get(f"provider:{endpoint_kind}", {}).items()})
    for source_name, source in spec.sources.items():
        if not source.enabled:
            continue
        cfg = tenant.sources[source_name]
        cfg.options.update(source.options)
        cfg.field_map.update(source.field_map)
        cfg.allowed_source_ranges.extend(source.allowed_source_ranges)
        cfg.secrets.update({snake(k): v for k, v in secrets.get(source_name, {}).items()})
    return tenant


def resolve_secret_ref(ref: SecretRef, secret_data: dict[str, str]) -> dict[str, str]:
    """The values a source gets from its Secret: one key as `secret`, or every key."""
    if ref.key is not None:
        if ref.key not in secret_data:
            raise KeyError(f"secret {ref.name!r} has no key {ref.key!r}")
        return {ref.key: secret_data[ref.key], "secret": secret_data[ref.key]}
    return dict(secret_data)

"""The reconcile logic, pure: specs to protos, compliance answers to `.status`. No I/O here.

The kopf handlers (handlers.py) read Secrets and call compliance; everything they decide is
decided here, so it is tested without Kubernetes or gRPC.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import grpc
import pydantic

from leadflow.v1 import tenant_pb2, tenants_pb2
from leadflow_core.tenant_spec import SecretRef, TenantSpec, event_endpoint_kind, resolve_secret_ref, to_proto

Phase = Literal["Pending", "Active", "Paused", "Degraded", "Deactivated"]
Retry = Literal["temporary", "permanent"]
Condition = dict[str, Any]

# Codes that mean "compliance cannot answer now": retry later, the spec is not at fault.
_TEMPORARY = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)


class InvalidSpec(ValueError):
    """A spec the CRD's schema let through but that cannot become a tenant (retrying won't help)."""


class MissingSecret(LookupError):
    """A Secret or key a secretRef names does not exist (yet): retry, it may be created later."""


def retry_kind(code: grpc.StatusCode) -> Retry:
    return "temporary" if code in _TEMPORARY else "permanent"


def parse_spec(raw: Mapping[str, Any]) -> TenantSpec:
    try:
        return TenantSpec.model_validate(dict(raw))
    except pydantic.ValidationError as err:
        raise InvalidSpec(_summarise(err)) from None


def _summarise(err: pydantic.ValidationError) -> str:
    # Locations and reasons only: input values stay out of events and logs.
    parts = []
    for e in err.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "spec"
        parts.append(f"spec.{loc}: {e['msg']}")
    return "; ".join(parts)


def secret_refs(spec: TenantSpec) -> dict[str, SecretRef]:
    """What to read: source name or "provider:<kind>" -> the Secret it names."""
    refs: dict[str, SecretRef] = {}
    for name, source in spec.sources.items():
        if source.enabled and source.secret_ref is not None:
            refs[name] = source.secret_ref
    for kind, provider in spec.providers.items():
        if provider.secret_ref is not None:
            refs[f"provider:{kind}"] = provider.secret_ref
    for name, endpoint in spec.event_endpoints.items():
        refs[f"provider:{event_endpoint_kind(name)}"] = endpoint.secret_ref
    return refs


def decode_secret_data(data: Mapping[str, str] | None) -> dict[str, str]:
    """A Secret's `.data` (base64) as text values."""
    out: dict[str, str] = {}
    for key, value in (data or {}).items():
        try:
            out[key] = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidSpec(f"secret key {key!r} is not base64 UTF-8 text") from None
    return out


def desired_tenant(
    name: str, spec: TenantSpec, secret_data: Mapping[str, Mapping[str, str] | None]
) -> tenant_pb2.Tenant:
    """The Tenant message to apply. `secret_data` maps a Secret's name to its decoded data,
    or to None when that Secret does not exist."""
    resolved: dict[str, dict[str, str]] = {}
    for owner, ref in secret_refs(spec).items():
        data = secret_data.get(ref.name)
        if data is None:
            raise MissingSecret(f"{owner}: Secret {ref.name!r} not found")
        try:
            resolved[owner] = resolve_secret_ref(ref, dict(data))
        except KeyError:
            raise MissingSecret(f"{owner}: Secret {ref.name!r} has no key {ref.key!r}") from None
    try:
        return to_proto(name, spec, resolved)
    except ValueError as err:
        # e.g. a value the proto cannot hold (a negative uint32).
        raise InvalidSpec(str(err)) from None


def phase_of(tenant: tenant_pb2.Tenant) -> Phase:
    if not tenant.active:
        return "Deactivated"
    return "Paused" if tenant.paused else "Active"


def change_event(resp: tenants_pb2.ApplyTenantResponse, previous_phase: str | None) -> tuple[str, str] | None:
    """(reason, message) of the Event an apply deserves, or None when nothing changed."""
    tenant = resp.tenant
    if resp.created:
        return "Created", f"tenant created in compliance (revision {tenant.revision})"
    phase = phase_of(tenant)
    if phase != previous_phase and phase in ("Paused", "Active") and previous_phase in ("Paused", "Active"):
        return ("Paused", "dialing stopped") if phase == "Paused" else ("Resumed", "dialing resumed")
    if resp.changed:
        return "Updated", f"tenant updated in compliance (revision {tenant.revision})"
    return None


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """The conditions with one set; lastTransitionTime moves only when the status flips."""
    value = "True" if status else "False"
    out: list[Condition] = []
    found = False
    for cond in conditions or ():
        if cond.get("type") != type_:
            out.append(dict(cond))
            continue
        found = True
        changed = cond.get("status") != value
        out.append(
            _condition(
                type_, value, reason, message, generation, now if changed else cond["lastTransitionTime"]
            )
        )
    if not found:
        out.append(_condition(type_, value, reason, message, generation, now))
    return out


def _condition(
    type_: str, value: str, reason: str, message: str, generation: int | None, when: datetime | str
) -> Condition:
    cond: Condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": when if isinstance(when, str) else rfc3339(when),
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Observed:
    """What the operator knows of a Tenant object when it writes status."""

    generation: int | None
    conditions: Sequence[Mapping[str, Any]]
    now: datetime


def applied_status(obs: Observed, resp: tenants_pb2.ApplyTenantResponse) -> dict[str, Any]:
    """Status after compliance accepted the spec."""
    tenant = resp.tenant
    conds = set_condition(
        obs.conditions, "Reconciled", True, "Applied", "spec applied to compliance", obs.generation, obs.now
    )
    conds = set_condition(
        conds, "Ready", True, "ComplianceReachable", _ready_message(tenant), obs.generation, obs.now
    )
    status: dict[str, Any] = {"phase": phase_of(tenant), "revision": tenant.revision, "conditions": conds}
    if resp.created or resp.changed:
        status["lastAppliedTime"] = rfc3339(obs.now)
    if obs.generation is not None:
        status["observedGeneration"] = obs.generation
    return status


def _ready_message(tenant: tenant_pb2.Tenant) -> str:
    return "tenant is paused: no dials" if tenant.paused else "tenant is active"


def failed_status(obs: Observed, reason: str, message: str, *, reachable: bool) -> dict[str, Any]:
    """Status after an apply failed. `reachable`: compliance answered (the spec is at fault)."""
    conds = set_condition(obs.conditions, "Reconciled", False, reason, message, obs.generation, obs.now)
    if not reachable:
        conds = set_condition(conds, "Ready", False, reason, message, obs.generation, obs.now)
    return {"phase": "Degraded", "conditions": conds}


def usage_status(
    obs: Observed, resp: tenants_pb2.GetTenantUsageResponse, tenant: tenant_pb2.Tenant
) -> dict[str, Any]:
    """Status refreshed by the timer: usage and phase, compliance reachable."""
    u = resp.usage
    conds = set_condition(
        obs.conditions, "Ready", True, "ComplianceReachable", _ready_message(tenant), obs.generation, obs.now
    )
    return {
        "phase": phase_of(tenant),
        "usage": {
            "callsToday": u.calls_today,
            "spendTodayUsd": u.spend_today_usd or "0.00",
            "activeCalls": u.active_calls,
            "callsLastMinute": u.calls_last_minute,
            "callsLastHour": u.calls_last_hour,
            "dailyBudgetUsd": resp.daily_budget_usd or tenant.budget.daily_usd,
        },
        "conditions": conds,
    }


def status_changes(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """Only the status fields that differ: a timer that finds nothing new writes nothing (each
    write is a watch event for every client of the API server)."""
    return {key: value for key, value in desired.items() if current.get(key) != value}


def unreachable_status(obs: Observed, message: str) -> dict[str, Any]:
    conds = set_condition(
        obs.conditions, "Ready", False, "ComplianceUnavailable", message, obs.generation, obs.now
    )
    return {"phase": "Degraded", "conditions": conds}


def referenced_secrets(raw_spec: Mapping[str, Any] | None) -> set[str]:
    """Names of the Secrets a (possibly invalid) spec refers to: what the Secret watch follows."""
    names: set[str] = set()
    spec = raw_spec or {}
    for section in ("sources", "providers"):
        for entry in (spec.get(section) or {}).values():
            ref = entry.get("secretRef") if isinstance(entry, Mapping) else None
            if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
                names.add(ref["name"])
    return names


def name_claim(created: str, namespace: str, status: Mapping[str, Any]) -> tuple[str, str, str]:
    """One Tenant's claim on its name: (creationTimestamp, rank, namespace).

    creationTimestamp has whole seconds, so two Tenants created in one second tie; the one
    already applied to compliance (and not refused for a conflict) then keeps the name, rank "0"
    before "1", so a newcomer of the same second never takes over a tenant in use."""
    conflicted = any(
        c.get("type") == "NameConflict" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    applied = bool(status.get("lastAppliedTime")) and not conflicted
    return (created, "0" if applied else "1", namespace)


def name_owner(claims: Iterable[tuple[str, ...]]) -> str | None:
    """Tenant names are one namespace's: of the Tenants sharing a name, the oldest holds it
    (creationTimestamp, then the one already applied, then namespace, so every replica and
    restart agrees). `claims` are `name_claim` tuples; the namespace holding the name is returned."""
    ordered = sorted(claims)
    return ordered[0][-1] if ordered else None


def conflict_message(name: str, owner: str) -> str:
    return (
        f"the tenant name {name!r} is already used by the Tenant in namespace {owner!r}; tenant names "
        "are unique across namespaces (compliance keys tenants by name): rename this Tenant"
    )


def conflict_status(obs: Observed, name: str, owner: str) -> dict[str, Any]:
    """Status of a Tenant refused because another namespace holds its name."""
    message = conflict_message(name, owner)
    conds = set_condition(
        obs.conditions, "NameConflict", True, "NameConflict", message, obs.generation, obs.now
    )
    conds = set_condition(conds, "Reconciled", False, "NameConflict", message, obs.generation, obs.now)
    return {"phase": "Degraded", "conditions": conds}


def without_conflict(obs: Observed) -> Observed:
    """The conditions with a past NameConflict resolved (this Tenant now holds its name)."""
    if not any(c.get("type") == "NameConflict" and c.get("status") == "True" for c in obs.conditions):
        return obs
    conds = set_condition(
        obs.conditions,
        "NameConflict",
        False,
        "NameHeld",
        "this Tenant holds its name",
        obs.generation,
        obs.now,
    )
    return Observed(obs.generation, conds, obs.now)


def deactivated_status(obs: Observed) -> dict[str, Any]:
    """Compliance holds the tenant deactivated (deliberately, e.g. `leadflow tenant deactivate`):
    re-applies leave it so; a change of the spec applies (and reactivates) it again."""
    message = "deactivated in compliance; the operator leaves it so until the spec changes"
    conds = set_condition(
        obs.conditions, "Reconciled", False, "DeactivatedInCompliance", message, obs.generation, obs.now
    )
    return {"phase": "Deactivated", "conditions": conds}

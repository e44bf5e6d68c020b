"""The pure reconcile logic: specs to protos, secrets resolved, status and conditions."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from leadflow.v1 import tenant_pb2, tenants_pb2
from leadflow_operator import reconcile

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)

SPEC = {
    "displayName": "ACME HVAC",
    "limits": {"callsPerMinute": 10, "callsPerHour": 100, "callsPerDay": 1000, "concurrentCalls": 5},
    "budget": {"dailyUsd": "100.00"},
    "sources": {
        "meta": {"secretRef": {"name": "acme-meta", "key": "appSecret"}},
        "hubspot": {"secretRef": {"name": "acme-hubspot"}, "options": {"app_id": "7"}},
        "form": {"enabled": False, "secretRef": {"name": "never-read"}},
    },
    "providers": {"dialer": {"type": "twilio", "secretRef": {"name": "acme-twilio"}}},
}
SECRETS = {
    "acme-meta": {"appSecret": "meta-app-secret", "verifyToken": "vt"},
    "acme-hubspot": {"clientSecret": "hs-secret"},
    "acme-twilio": {"authToken": "tw-token", "accountSid": "AC1"},
}


def b64(d: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in d.items()}


def test_secret_refs_skip_disabled_sources_and_include_providers() -> None:
    refs = reconcile.secret_refs(reconcile.parse_spec(SPEC))
    assert {k: r.name for k, r in refs.items()} == {
        "meta": "acme-meta",
        "hubspot": "acme-hubspot",
        "provider:dialer": "acme-twilio",
    }


def test_desired_tenant_carries_spec_and_resolved_secrets() -> None:
    tenant = reconcile.desired_tenant("acme-hvac", reconcile.parse_spec(SPEC), SECRETS)
    assert tenant.name == "acme-hvac"
    assert tenant.display_name == "ACME HVAC"
    assert tenant.limits.concurrent_calls == 5
    assert tenant.budget.daily_usd == "100.00"
    # One key: that key and `secret`; no key: every key, snake_cased.
    assert dict(tenant.sources["meta"].secrets) == {
        "app_secret": "meta-app-secret",
        "secret": "meta-app-secret",
    }
    assert dict(tenant.sources["hubspot"].secrets) == {"client_secret": "hs-secret"}
    assert dict(tenant.sources["hubspot"].options) == {"app_id": "7"}
    assert "form" not in tenant.sources
    assert tenant.providers["dialer"] == "twilio"
    assert dict(tenant.provider_configs["dialer"].secrets) == {"auth_token": "tw-token", "account_sid": "AC1"}


def test_missing_secret_or_key_is_retryable_not_invalid() -> None:
    spec = reconcile.parse_spec(SPEC)
    with pytest.raises(reconcile.MissingSecret, match="acme-meta"):
        reconcile.desired_tenant("acme", spec, {**SECRETS, "acme-meta": None})
    with pytest.raises(reconcile.MissingSecret, match="no key 'appSecret'"):
        reconcile.desired_tenant("acme", spec, {**SECRETS, "acme-meta": {"other": "x"}})


def test_secret_values_never_appear_in_errors() -> None:
    spec = reconcile.parse_spec(SPEC)
    with pytest.raises(reconcile.MissingSecret) as err:
        reconcile.desired_tenant("acme", spec, {**SECRETS, "acme-meta": {"wrongKey": "meta-app-secret"}})
    assert "meta-app-secret" not in str(err.value)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"limits": {"callsPerMinute": -1}}, "spec.limits.callsPerMinute"),
        ({"sources": {"myspace": {}}}, "spec.sources"),
        ({"budget": {"dailyUsd": "NaN"}}, "spec.budget.dailyUsd"),
        ({"surprise": True}, "spec.surprise"),
    ],
)
def test_invalid_spec_names_the_field_without_echoing_values(raw: dict[str, object], where: str) -> None:
    with pytest.raises(reconcile.InvalidSpec) as err:
        reconcile.parse_spec(raw)
    assert where in str(err.value)
    assert "input_value" not in str(err.value)


def test_a_value_the_proto_cannot_hold_is_an_invalid_spec() -> None:
    spec = reconcile.parse_spec({"policy": {"dialDelaySeconds": {"high": -5}}})
    with pytest.raises(reconcile.InvalidSpec):
        reconcile.desired_tenant("acme", spec, {})


def test_bad_tenant_name_is_an_invalid_spec() -> None:
    with pytest.raises(reconcile.InvalidSpec):
        reconcile.desired_tenant("Not_A_Label", reconcile.parse_spec({}), {})


def test_decode_secret_data() -> None:
    assert reconcile.decode_secret_data(b64({"a": "x y"})) == {"a": "x y"}
    assert reconcile.decode_secret_data(None) == {}
    with pytest.raises(reconcile.InvalidSpec):
        reconcile.decode_secret_data({"a": "%%%"})


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (grpc.StatusCode.UNAVAILABLE, "temporary"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "temporary"),
        (grpc.StatusCode.INVALID_ARGUMENT, "permanent"),
        (grpc.StatusCode.FAILED_PRECONDITION, "permanent"),
        (grpc.StatusCode.PERMISSION_DENIED, "permanent"),
    ],
)
def test_retry_kind(code: grpc.StatusCode, kind: str) -> None:
    assert reconcile.retry_kind(code) == kind


def test_condition_transition_time_moves_only_on_flips() -> None:
    conds = reconcile.set_condition(None, "Ready", True, "Ok", "fine", 1, NOW)
    assert conds == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Ok",
            "message": "fine",
            "lastTransitionTime": "2026-11-23T10:00:00Z",
            "observedGeneration": 1,
        }
    ]
    same = reconcile.set_condition(conds, "Ready", True, "StillOk", "fine", 2, LATER)
    assert same[0]["lastTransitionTime"] == "2026-11-23T10:00:00Z"
    assert (same[0]["reason"], same[0]["observedGeneration"]) == ("StillOk", 2)
    flipped = reconcile.set_condition(same, "Ready", False, "Down", "gone", 2, LATER)
    assert flipped[0]["lastTransitionTime"] == "2026-11-23T10:05:00Z"
    both = reconcile.set_condition(flipped, "Reconciled", True, "Applied", "ok", 2, LATER)
    assert [c["type"] for c in both] == ["Ready", "Reconciled"]
    assert conds[0]["status"] == "True", "inputs are not mutated"


def tenant(paused: bool = False, active: bool = True, revision: int = 3) -> tenant_pb2.Tenant:
    return tenant_pb2.Tenant(
        name="acme",
        paused=paused,
        active=active,
        revision=revision,
        budget=tenant_pb2.TenantBudget(daily_usd="100.00"),
    )


def applied(t: tenant_pb2.Tenant, changed: bool = True) -> tenants_pb2.ApplyTenantResponse:
    return tenants_pb2.ApplyTenantResponse(tenant=t, changed=changed)


def test_applied_status() -> None:
    obs = reconcile.Observed(generation=4, conditions=[], now=NOW)
    status = reconcile.applied_status(obs, applied(tenant(paused=True)))
    assert status["phase"] == "Paused"
    assert status["observedGeneration"] == 4
    assert status["revision"] == 3
    assert status["lastAppliedTime"] == "2026-11-23T10:00:00Z"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Reconciled": "True", "Ready": "True"}


def test_an_unchanged_reapply_rewrites_nothing() -> None:
    first = reconcile.applied_status(reconcile.Observed(4, [], NOW), applied(tenant()))
    again = reconcile.applied_status(
        reconcile.Observed(4, first["conditions"], LATER), applied(tenant(), False)
    )
    assert "lastAppliedTime" not in again
    assert reconcile.status_changes(first, again) == {}


def test_failed_status_keeps_ready_when_compliance_answered() -> None:
    ok = reconcile.applied_status(reconcile.Observed(1, [], NOW), applied(tenant()))
    obs = reconcile.Observed(2, ok["conditions"], LATER)
    rejected = reconcile.failed_status(obs, "Rejected", "bad", reachable=True)
    assert rejected["phase"] == "Degraded"
    assert {c["type"]: c["status"] for c in rejected["conditions"]} == {
        "Reconciled": "False",
        "Ready": "True",
    }
    down = reconcile.failed_status(obs, "ComplianceUnavailable", "down", reachable=False)
    assert {c["type"]: c["status"] for c in down["conditions"]} == {"Reconciled": "False", "Ready": "False"}
    assert "observedGeneration" not in down, "a failed apply does not claim the generation"


def test_usage_status() -> None:
    resp = tenants_pb2.GetTenantUsageResponse(
        usage=tenant_pb2.TenantUsage(
            calls_today=41, spend_today_usd="12.30", active_calls=2, calls_last_hour=7
        ),
        daily_budget_usd="100.00",
    )
    status = reconcile.usage_status(reconcile.Observed(3, [], NOW), resp, tenant())
    assert status["phase"] == "Active"
    assert status["usage"] == {
        "callsToday": 41,
        "spendTodayUsd": "12.30",
        "activeCalls": 2,
        "callsLastMinute": 0,
        "callsLastHour": 7,
        "dailyBudgetUsd": "100.00",
    }


@pytest.mark.parametrize(
    ("created", "changed", "paused", "previous", "reason"),
    [
        (True, True, False, None, "Created"),
        (False, True, True, "Active", "Paused"),
        (False, True, False, "Paused", "Resumed"),
        (False, True, False, "Active", "Updated"),
        (False, False, False, "Active", None),
    ],
)
def test_change_event(
    created: bool, changed: bool, paused: bool, previous: str | None, reason: str | None
) -> None:
    resp = tenants_pb2.ApplyTenantResponse(tenant=tenant(paused=paused), created=created, changed=changed)
    event = reconcile.change_event(resp, previous)
    assert (event[0] if event else None) == reason


def test_status_changes_skip_what_is_already_there() -> None:
    current = {"phase": "Active", "usage": {"callsToday": 1}, "conditions": [{"type": "Ready"}]}
    desired = {"phase": "Active", "usage": {"callsToday": 2}, "conditions": [{"type": "Ready"}]}
    assert reconcile.status_changes(current, desired) == {"usage": {"callsToday": 2}}
    assert reconcile.status_changes(desired, desired) == {}


def test_reconcile_stays_pure() -> None:
    """Layering (the habit import-linter enforces in kopf's own repo): no kopf, HTTP or gRPC I/O."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(reconcile))
    imported = {
        name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])
    }
    forbidden = {"kopf", "aiohttp", "grpc.aio", "leadflow_operator.kube", "leadflow_operator.compliance"}
    assert imported.isdisjoint(forbidden), imported & forbidden


def test_the_oldest_tenant_holds_a_shared_name_and_an_applied_one_wins_a_tie() -> None:
    applied = {"lastAppliedTime": "2026-12-01T10:00:00Z", "conditions": []}
    refused = {
        "lastAppliedTime": "2026-12-01T10:00:00Z",
        "conditions": [{"type": "NameConflict", "status": "True"}],
    }
    older = reconcile.name_claim("2026-12-01T10:00:00Z", "zz", {})
    newer = reconcile.name_claim("2026-12-01T10:00:01Z", "aa", applied)
    assert reconcile.name_owner([newer, older]) == "zz"
    # Created in the same second: the one already applied keeps the name, whatever the namespaces.
    holder = reconcile.name_claim("2026-12-01T10:00:00Z", "zz", applied)
    newcomer = reconcile.name_claim("2026-12-01T10:00:00Z", "aa", {})
    assert reconcile.name_owner([newcomer, holder]) == "zz"
    # A Tenant refused for the conflict does not count as applied.
    assert reconcile.name_owner([reconcile.name_claim("2026-12-01T10:00:00Z", "aa", refused), holder]) == "zz"
    # Neither applied yet: the namespace decides, the same way in every replica.
    assert (
        reconcile.name_owner([reconcile.name_claim("t", "b", {}), reconcile.name_claim("t", "a", {})]) == "a"
    )
    assert reconcile.name_owner([]) is None

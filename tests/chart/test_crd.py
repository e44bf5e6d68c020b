"""The Tenant CRD: a valid, structural CRD whose schema agrees with leadflow_core.tenant_spec."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pydantic
import pytest
import yaml

from leadflow_core.tenant_spec import TenantSpec
from leadflow_core.tenant_vocab import REGIONS, TIMEZONES
from tests.chart.rendering import CHART_DIR, KUBE_VERSIONS, Obj, crd

DESIGN_EXAMPLE = """
apiVersion: leadflow.dev/v1alpha1
kind: Tenant
metadata: {name: acme-hvac}
spec:
  displayName: ACME HVAC
  paused: false
  limits: {callsPerMinute: 10, callsPerHour: 100, callsPerDay: 1000, concurrentCalls: 5,
           priorityBoostPercent: 20}
  budget: {dailyUsd: "100.00"}
  sources: {meta: {secretRef: {name: acme-meta, key: appSecret}}}
"""


def version_schema() -> Obj:
    schema: Obj = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: Obj, path: str = "") -> Iterator[tuple[str, Obj]]:
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


# The CRD's CEL rules, each with its JSON-schema equivalent (jsonschema does not run CEL; the
# real API server tier, test_real_apiserver.py, runs the rules themselves).
_OTHER_TYPE = re.compile(r"^self\.type != '(\w+)' \|\| has\(self\.secretRef\)$")
_LOCAL_TYPE = re.compile(r"^self\.type == '(\w+)' \|\| has\(self\.secretRef\)$")
_ZONES = re.compile(r"^self == '' \|\| self in \[(.*)\]$")
_MONEY = "type(self) == int ? self >= 0 && self <= 1000000 : "
_MATCHES = re.compile(r"self\.matches\('(.*)'\)")
_KEYS_MATCH = re.compile(r"^self\.all\(k, k\.matches\('(.*)'\)\)$")


def cel_as_jsonschema(rule: str) -> Obj:
    if m := _OTHER_TYPE.match(rule):
        return {"anyOf": [{"properties": {"type": {"not": {"enum": [m[1]]}}}}, {"required": ["secretRef"]}]}
    if m := _LOCAL_TYPE.match(rule):
        return {"anyOf": [{"properties": {"type": {"enum": [m[1]]}}}, {"required": ["secretRef"]}]}
    if m := _ZONES.match(rule):
        return {"enum": ["", *(z.strip().strip("'") for z in m[1].split(","))]}
    if rule.startswith(_MONEY) and (m := _MATCHES.fullmatch(rule.removeprefix(_MONEY))):
        money = {"type": "string", "pattern": m[1]}
        return {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 1_000_000}, money]}
    if m := _KEYS_MATCH.match(rule):
        # Draft 4 (OpenAPI's) has no propertyNames: every key must match the one pattern.
        return {"patternProperties": {m[1]: {}}, "additionalProperties": False}
    raise AssertionError(f"CEL rule without a JSON-schema equivalent in this test: {rule}")


def strict(schema: Obj) -> Obj:
    """The schema as kubectl's strict field validation applies it: unknown fields are errors."""
    out = copy.deepcopy(schema)
    for path, node in walk(out):
        if "properties" in node and path != ".metadata":
            node["additionalProperties"] = False
        rules = node.pop("x-kubernetes-validations", [])
        if rules:
            node["allOf"] = [cel_as_jsonschema(r["rule"]) for r in rules]
    # metadata is the API server's own; only `name` is restricted by the CRD.
    out["properties"]["metadata"]["additionalProperties"] = True
    return out


def check(tenant: Obj) -> None:
    """Validate as the API server would: defaults applied, then the schema, strictly."""
    validator = jsonschema.Draft4Validator(
        strict(version_schema()), format_checker=jsonschema.FormatChecker()
    )
    validator.validate(tenant)


def apply_defaults(schema: Obj, value: Any) -> Any:
    """Structural defaulting as the API server does it (defaults of present or defaulted objects)."""
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
        if isinstance(schema.get("additionalProperties"), dict):
            for key in value:
                value[key] = apply_defaults(schema["additionalProperties"], value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def tenant(spec: Obj) -> Obj:
    return {"apiVersion": "leadflow.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "t1"}, "spec": spec}


def crd_accepts(spec: Obj) -> bool:
    try:
        check(tenant(spec))
    except jsonschema.ValidationError:
        return False
    return True


def model_accepts(spec: Obj) -> bool:
    # Strict: JSON types as the API server checks them (lax mode would turn "5" into 5).
    try:
        TenantSpec.model_validate(spec, strict=True)
    except pydantic.ValidationError:
        return False
    return True


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_crd_is_a_valid_kubernetes_object(kube_version: str) -> None:
    kubernetes_validate.validate(crd(), kube_version, strict=True)


def test_crd_is_the_only_copy_and_is_shipped_in_crds() -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        crds = chart.crds
        templates = chart.templates
    assert [c["filename"] for c in crds] == ["leadflow/crds/tenants.leadflow.dev.yaml"]
    assert not any("CustomResourceDefinition" in t["data"] for t in templates)


def test_crd_schema_is_structural() -> None:
    for path, node in walk(version_schema()):
        if path in ("", ".metadata"):
            continue
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), f"{path}: not structural"
        assert "$ref" not in node


def test_crd_names_columns_and_status() -> None:
    spec = crd()["spec"]
    assert (spec["group"], spec["names"]["plural"], spec["names"]["kind"]) == (
        "leadflow.dev",
        "tenants",
        "Tenant",
    )
    assert "lft" in spec["names"]["shortNames"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Paused"] == ".spec.paused"
    assert columns["Calls today"] == ".status.usage.callsToday"
    assert columns["Spend"] == ".status.usage.spendTodayUsd"
    assert columns["Budget"] == ".spec.budget.dailyUsd"
    assert columns["Age"] == ".metadata.creationTimestamp"
    # Every printer column points at a field the schema has.
    fields = {p for p, _ in walk(version_schema())}
    for c in version["additionalPrinterColumns"]:
        assert c["jsonPath"] in fields | {".metadata.creationTimestamp"}, c


def test_design_example_is_accepted() -> None:
    example = yaml.safe_load(DESIGN_EXAMPLE)
    check(apply_defaults(version_schema(), example))
    TenantSpec.model_validate(example["spec"])


def test_status_written_by_the_operator_is_valid() -> None:
    obj = tenant({})
    obj["status"] = {
        "phase": "Active",
        "observedGeneration": 3,
        "usage": {"callsToday": 41, "spendTodayUsd": "12.30", "activeCalls": 2},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Reconciled",
                "message": "applied to compliance",
                "lastTransitionTime": "2026-11-23T10:00:00Z",
                "observedGeneration": 3,
            }
        ],
    }
    check(obj)


BAD_SPECS = [
    pytest.param({"limits": {"callsPerMinute": -1}}, id="negative-limit"),
    pytest.param({"limits": {"concurrentCalls": "5"}}, id="limit-as-string"),
    pytest.param({"limits": {"priorityBoostPercent": 101}}, id="boost-over-100"),
    pytest.param({"budget": {"dailyUsd": 100.5}}, id="budget-as-float"),
    pytest.param({"budget": {"dailyUsd": "1000000.01"}}, id="budget-over-max"),
    pytest.param({"budget": {"dailyUsd": 1000001}}, id="budget-int-over-max"),
    pytest.param({"budget": {"dailyUsd": "1.005"}}, id="budget-fraction-of-cent"),
    pytest.param({"budget": {"dailyUsd": "-5.00"}}, id="negative-budget"),
    pytest.param({"budget": {"dailyUsd": "lots"}}, id="budget-not-decimal"),
    pytest.param({"paused": "yes"}, id="paused-not-bool"),
    pytest.param({"colour": "blue"}, id="unknown-field"),
    pytest.param({"limits": {"callsPerSecond": 1}}, id="unknown-limit"),
    pytest.param({"sources": {"myspace": {}}}, id="unknown-source"),
    pytest.param({"sources": {"meta": {"secretRef": {"key": "appSecret"}}}}, id="secretref-without-name"),
    pytest.param({"policy": {"urgencyRules": [{"pattern": "flood", "urgency": "asap"}]}}, id="bad-urgency"),
    pytest.param({"policy": {"windowStart": "9am"}}, id="bad-window"),
    pytest.param({"policy": {"windowEnd": "24:01"}}, id="window-end-24-01"),
    pytest.param({"policy": {"windowEnd": "24:59"}}, id="window-end-24-59"),
    pytest.param({"policy": {"windowStart": "24:00"}}, id="window-start-24-00"),
    pytest.param({"policy": {"windowEnd": "23:60"}}, id="window-end-23-60"),
    pytest.param({"policy": {"fallbackTimezone": "Mars/Olympus"}}, id="unknown-timezone"),
    pytest.param({"policy": {"defaultRegion": "u1"}}, id="region-u1"),
    pytest.param({"policy": {"defaultRegion": "XX"}}, id="region-not-iso"),
    pytest.param({"policy": {"maxDialAttempts": 0}}, id="zero-attempts"),
    pytest.param({"plan": {"features": ["teleport"]}}, id="bad-feature"),
    pytest.param({"providers": {"fax": {"type": "x"}}}, id="unknown-provider-kind"),
    pytest.param({"providers": {"crm": {}}}, id="provider-without-type"),
    pytest.param({"providers": {"dialer": {"type": "carrier-pigeon"}}}, id="unknown-dialer-type"),
    pytest.param({"providers": {"crm": {"type": "twilio", "secretRef": {"name": "x"}}}}, id="twilio-as-crm"),
    pytest.param({"providers": {"llm": {"type": "openai-ish"}}}, id="unknown-llm-type"),
    pytest.param({"displayName": "x" * 201}, id="long-display-name"),
    pytest.param(
        {
            "eventEndpoints": {
                "Ops_Hook": {"url": "https://x.test/h", "events": ["lead.stored"], "secretRef": {"name": "h"}}
            }
        },
        id="endpoint-name-not-a-label",
    ),
    pytest.param(
        {
            "eventEndpoints": {
                "ops": {"url": "https://x.test/h", "events": ["lead.eaten"], "secretRef": {"name": "h"}}
            }
        },
        id="unknown-event-type",
    ),
    pytest.param(
        {
            "eventEndpoints": {
                "ops": {"url": "file:///etc/passwd", "events": ["lead.stored"], "secretRef": {"name": "h"}}
            }
        },
        id="endpoint-not-http",
    ),
    pytest.param(
        {"eventEndpoints": {"ops": {"url": "https://x.test/h", "events": ["lead.stored"]}}},
        id="endpoint-without-secret",
    ),
    pytest.param(
        {"eventEndpoints": {"ops": {"url": "https://x.test/h", "events": [], "secretRef": {"name": "h"}}}},
        id="endpoint-without-events",
    ),
]


@pytest.mark.parametrize("spec", BAD_SPECS)
def test_crd_refuses_bad_specs(spec: Obj) -> None:
    assert not crd_accepts(spec)


@pytest.mark.parametrize("spec", BAD_SPECS)
def test_tenant_spec_refuses_them_too(spec: Obj) -> None:
    assert not model_accepts(spec)


GOOD_SPECS = [
    {},
    {"paused": True, "limits": {"callsPerMinute": 0}},
    {"budget": {"dailyUsd": "0"}},
    {"budget": {"dailyUsd": "2500.5"}},
    {"budget": {"dailyUsd": 100}},
    {"budget": {"dailyUsd": "1000000"}},
    {
        "sources": {
            "hubspot": {"secretRef": {"name": "hs"}, "options": {"app_id": "1"}},
            "form": {"enabled": False, "fieldMap": {"tel": "phone"}},
        }
    },
    {
        "policy": {
            "defaultRegion": "CA",
            "windowStart": "09:00",
            "windowEnd": "24:00",
            "fallbackTimezone": "America/Chicago",
            "urgencyRules": [{"pattern": "burst pipe", "urgency": "emergency"}],
            "dialDelaySeconds": {"high": 10},
        }
    },
    {"plan": {"name": "pro", "features": ["auto_dial"]}},
    {
        "providers": {
            "dialer": {"type": "twilio", "secretRef": {"name": "tw"}, "options": {"from": "+15550100"}}
        }
    },
    {
        "eventEndpoints": {
            "ops-1": {
                "url": "https://hooks.example.com/leadflow",
                "events": [
                    "lead.stored",
                    "lead.refused",
                    "call.placed",
                    "call.completed",
                    "lead.dead_lettered",
                ],
                "secretRef": {"name": "hooks", "key": "signing"},
            }
        }
    },
]


@pytest.mark.parametrize("spec", GOOD_SPECS, ids=lambda s: ",".join(s) or "empty")
def test_crd_and_tenant_spec_agree_on_good_specs(spec: Obj) -> None:
    assert crd_accepts(spec)
    assert model_accepts(spec)


@pytest.mark.parametrize("spec", GOOD_SPECS, ids=lambda s: ",".join(s) or "empty")
def test_crd_defaults_equal_the_model_defaults(spec: Obj) -> None:
    """A spec defaulted by the API server means the same tenant as the model's own defaults."""
    defaulted = apply_defaults(version_schema()["properties"]["spec"], copy.deepcopy(spec))
    from_server = TenantSpec.model_validate(defaulted)
    from_model = TenantSpec.model_validate(spec)
    assert from_server == from_model
    for key in ("paused", "limits", "budget", "policy", "plan"):
        assert key in defaulted, f"the API server must default {key}"


# Specs only the CRD refuses (the Kubernetes path needs a tenant's own secret for a paid
# provider; the CLI and tests may pass secrets without a secretRef).
CRD_ONLY_BAD = [
    pytest.param({"providers": {"dialer": {"type": "twilio"}}}, id="twilio-without-secret"),
    pytest.param({"providers": {"crm": {"type": "hubspot"}}}, id="hubspot-without-secret"),
    pytest.param({"providers": {"llm": {"type": "openai"}}}, id="openai-without-secret"),
]


@pytest.mark.parametrize("spec", CRD_ONLY_BAD)
def test_crd_refuses_paid_providers_without_a_secret(spec: Obj) -> None:
    assert not crd_accepts(spec)
    assert model_accepts(spec)


def test_every_field_has_a_description() -> None:
    # metadata is the API server's: a CRD may only restrict its name there (no descriptions).
    missing = [
        p or "(root)"
        for p, node in walk(version_schema())
        if not p.startswith(".metadata") and not isinstance(node.get("description"), str)
    ]
    assert missing == []


def test_vocabularies_agree_with_tenant_vocab() -> None:
    import zoneinfo

    policy = version_schema()["properties"]["spec"]["properties"]["policy"]["properties"]
    assert tuple(policy["defaultRegion"]["enum"]) == REGIONS
    (rule,) = policy["fallbackTimezone"]["x-kubernetes-validations"]
    zones = cel_as_jsonschema(rule["rule"])["enum"][1:]
    assert tuple(zones) == TIMEZONES
    from leadflow_compliance.tz_database import known_zones

    # Compliance must accept and load every zone the CRD lets through (its pinned tzdata).
    assert set(TIMEZONES) <= set(known_zones())
    for zone in TIMEZONES:
        zoneinfo.ZoneInfo(zone)
    assert len(REGIONS) == 249
    assert {"US", "NO", "GB"} <= set(REGIONS)


def test_crd_is_served_as_v1alpha1_with_a_documented_path_to_v1() -> None:
    versions = crd()["spec"]["versions"]
    assert [(v["name"], v["served"], v["storage"]) for v in versions] == [("v1alpha1", True, True)]
    readme = (CHART_DIR / "README.md").read_text()
    assert "## From v1alpha1 to v1" in readme


@pytest.mark.parametrize(
    ("value", "start_ok", "end_ok"),
    [
        ("00:00", True, True),
        ("23:59", True, True),
        ("24:00", False, True),
        ("24:01", False, False),
        ("24:59", False, False),
        ("23:60", False, False),
        ("9:00", False, False),
    ],
)
def test_window_times_agree_in_crd_model_and_compliance(value: str, start_ok: bool, end_ok: bool) -> None:
    from leadflow_compliance.rule_table import parse_hhmm
    from leadflow_core.tenant_spec import is_hhmm

    policy = version_schema()["properties"]["spec"]["properties"]["policy"]["properties"]
    for field, ok in (("windowStart", start_ok), ("windowEnd", end_ok)):
        assert crd_accepts({"policy": {field: value}}) is ok, field
        assert model_accepts({"policy": {field: value}}) is ok, field
        assert (re.fullmatch(policy[field]["pattern"], value) is not None) is ok, field
        assert is_hhmm(value, end=field == "windowEnd") is ok, field
    if end_ok:
        parse_hhmm(value)
    elif value.startswith("24:"):
        with pytest.raises(ValueError, match="24:00 is the only"):
            parse_hhmm(value)

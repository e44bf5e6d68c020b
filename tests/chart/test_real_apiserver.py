"""The Tenant CRD on a real Kubernetes API server (apiextensions-apiserver + etcd, see
tests/k8s_apiserver): schema and CEL validation, defaults, strict fields, server-side dry-run,
watch, printer columns, the status subresource and `kubectl explain`, driven with kubectl.

Every validation rule of the CRD has a rejected example here; a test walks the schema and fails
when a rule is added without one."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.chart.rendering import crd
from tests.k8s_apiserver.cluster import ApiServer

Obj = dict[str, Any]
RULE_KEYS = (
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "enum",
    "maxItems",
    "maxProperties",
    "required",
)


def tenant(name: str, ns: str, spec: Obj) -> Obj:
    return {
        "apiVersion": "leadflow.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def apply(server: ApiServer, *objs: Obj, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    text = yaml.safe_dump_all(objs)
    return server.kubectl("apply", "-f", "-", *extra, input=text, check=False)


@pytest.fixture(scope="module")
def ns(apiserver: ApiServer) -> str:
    name = f"crd-{uuid.uuid4().hex[:6]}"
    apply(apiserver, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def _norm(path: str) -> str:
    path = re.sub(r"^\.spec\.sources\.\w+", ".spec.sources.*", path)
    return re.sub(r"^\.spec\.providers\.\w+\.(secretRef|options)", r".spec.providers.*.\1", path)


def crd_rules() -> set[tuple[str, str]]:
    """(path, rule) for every validation rule of the spec and the name."""
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    found: set[tuple[str, str]] = set()

    def walk(node: Obj, path: str) -> Iterator[None]:
        for key in RULE_KEYS:
            if key in node:
                found.add((_norm(path), key))
        for rule in node.get("x-kubernetes-validations", []):
            found.add((_norm(path), f"cel:{rule['message']}"))
        for key, sub in node.get("properties", {}).items():
            yield from walk(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from walk(node["additionalProperties"], f"{path}{{}}")

    for _ in walk(schema["properties"]["spec"], ".spec"):
        pass
    for _ in walk(schema["properties"]["metadata"], ".metadata"):
        pass
    return found


LONG = "x" * 4097
LIMITS = ("callsPerMinute", "callsPerHour", "callsPerDay", "concurrentCalls", "priorityBoostPercent")
DELAYS = ("emergency", "high", "medium", "low")
POLICY_INTS = ("consentExpiryDays", "maxDialAttempts", "retryBackoffSeconds", "mergeWindowSeconds")
SECRET_BAD = {"name": "Not_A_Name", "key": "bad key/"}

# (id, spec, name, expected error fragments, rules covered)
CASES: list[tuple[str, Obj, str, list[str], list[tuple[str, str]]]] = [
    (
        "limits-below-minimum",
        {
            "limits": dict.fromkeys(LIMITS, -1),
            "policy": {**dict.fromkeys(POLICY_INTS, -1), "dialDelaySeconds": dict.fromkeys(DELAYS, -1)},
        },
        "",
        [f"spec.limits.{k}" for k in LIMITS]
        + [f"spec.policy.{k}" for k in POLICY_INTS]
        + [f"spec.policy.dialDelaySeconds.{k}" for k in DELAYS],
        [(f".spec.limits.{k}", "minimum") for k in LIMITS]
        + [(f".spec.policy.{k}", "minimum") for k in POLICY_INTS]
        + [(f".spec.policy.dialDelaySeconds.{k}", "minimum") for k in DELAYS],
    ),
    (
        "limits-above-maximum",
        {
            "limits": dict.fromkeys(LIMITS, 10**9),
            "policy": {**dict.fromkeys(POLICY_INTS, 10**9), "dialDelaySeconds": dict.fromkeys(DELAYS, 10**9)},
        },
        "",
        [f"spec.limits.{k}" for k in LIMITS]
        + [f"spec.policy.{k}" for k in POLICY_INTS]
        + [f"spec.policy.dialDelaySeconds.{k}" for k in DELAYS],
        [(f".spec.limits.{k}", "maximum") for k in LIMITS]
        + [(f".spec.policy.{k}", "maximum") for k in POLICY_INTS]
        + [(f".spec.policy.dialDelaySeconds.{k}", "maximum") for k in DELAYS],
    ),
    (
        "times-region-zone-urgency-plan",
        {
            "displayName": "d" * 201,
            "policy": {
                "windowStart": "24:00",
                "windowEnd": "24:01",
                "defaultRegion": "u1",
                "fallbackTimezone": "Z" * 65,
                "recording": "sometimes",
                "revocationScope": "everything",
                "urgencyRules": [
                    {"pattern": "", "urgency": "asap"},
                    {"pattern": "p" * 501, "urgency": "low"},
                    {},
                ],
            },
            "plan": {"name": "n" * 64, "features": ["teleport"]},
        },
        "",
        [
            "spec.displayName",
            'spec.policy.windowStart: Invalid value: "24:00"',
            'spec.policy.windowEnd: Invalid value: "24:01"',
            'spec.policy.defaultRegion: Unsupported value: "u1"',
            'spec.policy.recording: Unsupported value: "sometimes"',
            'spec.policy.revocationScope: Unsupported value: "everything"',
            "spec.policy.fallbackTimezone: Too long",
            "spec.policy.urgencyRules[0].pattern",
            'spec.policy.urgencyRules[0].urgency: Unsupported value: "asap"',
            "spec.policy.urgencyRules[1].pattern: Too long",
            "spec.policy.urgencyRules[2].pattern: Required value",
            "spec.policy.urgencyRules[2].urgency: Required value",
            "spec.plan.name: Too long",
            'spec.plan.features[0]: Unsupported value: "teleport"',
        ],
        [
            (".spec.displayName", "maxLength"),
            (".spec.policy.windowStart", "pattern"),
            (".spec.policy.windowEnd", "pattern"),
            (".spec.policy.defaultRegion", "enum"),
            (".spec.policy.recording", "enum"),
            (".spec.policy.revocationScope", "enum"),
            (".spec.policy.fallbackTimezone", "maxLength"),
            (".spec.policy.urgencyRules[]", "required"),
            (".spec.policy.urgencyRules[].pattern", "minLength"),
            (".spec.policy.urgencyRules[].pattern", "maxLength"),
            (".spec.policy.urgencyRules[].urgency", "enum"),
            (".spec.plan.name", "maxLength"),
            (".spec.plan.features[]", "enum"),
        ],
    ),
    (
        "bad-registrations",
        {"policy": {"registrations": [{"state": "Florida", "id": "i" * 101}, {"id": "x"}]}},
        "",
        [
            'spec.policy.registrations[0].state: Invalid value: "Florida"',
            "spec.policy.registrations[0].id: Too long",
            "spec.policy.registrations[1].state: Required value",
        ],
        [
            (".spec.policy.registrations[]", "required"),
            (".spec.policy.registrations[].state", "pattern"),
            (".spec.policy.registrations[].id", "maxLength"),
        ],
    ),
    (
        "too-many-rules",
        {"policy": {"urgencyRules": [{"pattern": f"p{i}", "urgency": "low"} for i in range(201)]}},
        "",
        ["spec.policy.urgencyRules: Too many: 201"],
        [(".spec.policy.urgencyRules", "maxItems")],
    ),
    (
        "bad-sources",
        {
            "sources": {
                "meta": {"secretRef": SECRET_BAD, "options": {"o": LONG}, "fieldMap": {"f": "x" * 257}},
                "hubspot": {"secretRef": {"name": "n" * 254, "key": "k" * 254}},
                "form": {"secretRef": {"name": "", "key": ""}},
                "api": {
                    "secretRef": {},
                    "options": {f"k{i}": "v" for i in range(51)},
                    "fieldMap": {f"f{i}": "v" for i in range(201)},
                },
            }
        },
        "",
        [
            'spec.sources.meta.secretRef.name: Invalid value: "Not_A_Name"',
            "spec.sources.meta.secretRef.key: Invalid value",
            "spec.sources.meta.options.o: Too long",
            "spec.sources.meta.fieldMap.f: Too long",
            "spec.sources.hubspot.secretRef.name: Too long",
            "spec.sources.hubspot.secretRef.key: Too long",
            "spec.sources.form.secretRef.name: Invalid value",
            "spec.sources.form.secretRef.key: Invalid value",
            "spec.sources.api.secretRef.name: Required value",
            "spec.sources.api.options: Too many: 51",
            "spec.sources.api.fieldMap: Too many: 201",
        ],
        [
            (".spec.sources.*.secretRef", "required"),
            (".spec.sources.*.secretRef.name", "pattern"),
            (".spec.sources.*.secretRef.name", "minLength"),
            (".spec.sources.*.secretRef.name", "maxLength"),
            (".spec.sources.*.secretRef.key", "pattern"),
            (".spec.sources.*.secretRef.key", "minLength"),
            (".spec.sources.*.secretRef.key", "maxLength"),
            (".spec.sources.*.options", "maxProperties"),
            (".spec.sources.*.options{}", "maxLength"),
            (".spec.sources.*.fieldMap", "maxProperties"),
            (".spec.sources.*.fieldMap{}", "maxLength"),
        ],
    ),
    (
        "bad-providers",
        {
            "providers": {
                "crm": {"type": "twilio", "secretRef": SECRET_BAD, "options": {"o": LONG}},
                "dialer": {"type": "carrier-pigeon", "secretRef": {"name": "n" * 254, "key": "k" * 254}},
                "llm": {"secretRef": {"name": "", "key": ""}, "options": {f"k{i}": "v" for i in range(51)}},
            }
        },
        "",
        [
            'spec.providers.crm.type: Unsupported value: "twilio"',
            'spec.providers.dialer.type: Unsupported value: "carrier-pigeon"',
            "spec.providers.llm.type: Required value",
            "spec.providers.crm.secretRef.name: Invalid value",
            "spec.providers.crm.secretRef.key: Invalid value",
            "spec.providers.crm.options.o: Too long",
            "spec.providers.dialer.secretRef.name: Too long",
            "spec.providers.dialer.secretRef.key: Too long",
            "spec.providers.llm.options: Too many: 51",
        ],
        [
            (".spec.providers.crm", "required"),
            (".spec.providers.dialer", "required"),
            (".spec.providers.llm", "required"),
            (".spec.providers.crm.type", "enum"),
            (".spec.providers.dialer.type", "enum"),
            (".spec.providers.llm.type", "enum"),
            (".spec.providers.*.secretRef.name", "pattern"),
            (".spec.providers.*.secretRef.name", "minLength"),
            (".spec.providers.*.secretRef.name", "maxLength"),
            (".spec.providers.*.secretRef.key", "pattern"),
            (".spec.providers.*.secretRef.key", "minLength"),
            (".spec.providers.*.secretRef.key", "maxLength"),
            (".spec.providers.*.options", "maxProperties"),
            (".spec.providers.*.options{}", "maxLength"),
        ],
    ),
    (
        "provider-secretref-without-name",
        {"providers": {"crm": {"type": "hubspot", "secretRef": {"key": "access_token"}}}},
        "",
        ["spec.providers.crm.secretRef.name: Required value"],
        [(".spec.providers.*.secretRef", "required")],
    ),
    (
        "cel-rules",
        {
            "budget": {"dailyUsd": "1.005"},
            "timezone": "Mars/Olympus",
            "policy": {"fallbackTimezone": "Mars/Olympus"},
            "providers": {
                "crm": {"type": "hubspot"},
                "dialer": {"type": "twilio"},
                "llm": {"type": "openai"},
            },
        },
        "",
        [
            "spec.budget.dailyUsd: Invalid value",
            "dailyUsd must be dollars from 0 to 1000000",
            "fallbackTimezone must be an IANA time zone name",
            "spec.timezone: Invalid value",
            "a salesforce or hubspot CRM needs secretRef",
            "a twilio dialer needs secretRef",
            "an openai scorer needs secretRef",
        ],
        [
            (
                ".spec.budget.dailyUsd",
                "cel:"
                + "dailyUsd must be dollars from 0 to 1000000 with at most 2 decimals, "
                + 'written as a quoted string such as "100.00"',
            ),
            (
                ".spec.policy.fallbackTimezone",
                "cel:fallbackTimezone must be an IANA time zone name such as America/New_York, or empty",
            ),
            (
                ".spec.timezone",
                "cel:timezone must be an IANA time zone name such as America/New_York, or empty",
            ),
            (
                ".spec.providers.crm",
                "cel:a salesforce or hubspot CRM needs secretRef (a Secret with access_token)",
            ),
            (".spec.providers.dialer", "cel:a twilio dialer needs secretRef (a Secret with auth_token)"),
            (".spec.providers.llm", "cel:an openai scorer needs secretRef (a Secret with api_key)"),
        ],
    ),
    (
        "timezone-and-rate-card",
        {
            "timezone": "Z" * 65,
            "budget": {
                "rateCard": {
                    "defaultPerMinuteUsd": "-0.01",
                    "estimateMinutes": 0,
                    "rates": [{"country": "us", "lineType": "pager", "perMinuteUsd": "lots"}, {}],
                }
            },
        },
        "",
        [
            "spec.timezone: Too long",
            "spec.budget.rateCard.defaultPerMinuteUsd: Invalid value",
            "spec.budget.rateCard.estimateMinutes: Invalid value",
            "spec.budget.rateCard.rates[0].country: Invalid value",
            'spec.budget.rateCard.rates[0].lineType: Unsupported value: "pager"',
            "spec.budget.rateCard.rates[0].perMinuteUsd: Invalid value",
            "spec.budget.rateCard.rates[1].country: Required value",
            "spec.budget.rateCard.rates[1].perMinuteUsd: Required value",
        ],
        [
            (".spec.timezone", "maxLength"),
            (".spec.budget.rateCard.defaultPerMinuteUsd", "pattern"),
            (".spec.budget.rateCard.estimateMinutes", "minimum"),
            (".spec.budget.rateCard.rates[]", "required"),
            (".spec.budget.rateCard.rates[].country", "pattern"),
            (".spec.budget.rateCard.rates[].lineType", "enum"),
            (".spec.budget.rateCard.rates[].perMinuteUsd", "pattern"),
        ],
    ),
    (
        "rate-card-too-big",
        {
            "budget": {
                "rateCard": {
                    "estimateMinutes": 601,
                    "rates": [{"country": "US", "perMinuteUsd": "0.01"}] * 501,
                }
            },
        },
        "",
        [
            "spec.budget.rateCard.estimateMinutes: Invalid value",
            "spec.budget.rateCard.rates: Too many",
        ],
        [
            (".spec.budget.rateCard.estimateMinutes", "maximum"),
            (".spec.budget.rateCard.rates", "maxItems"),
        ],
    ),
    (
        "budget-over-max",
        {"budget": {"dailyUsd": 1000001}},
        "",
        ["dailyUsd must be dollars from 0 to 1000000"],
        [],
    ),
    (
        "budget-unquoted-fraction",
        {"budget": {"dailyUsd": 100.5}},
        "",
        ["spec.budget.dailyUsd", "must be of type integer,string"],
        [],
    ),
    (
        "bad-name",
        {},
        "Bad.Name",
        ["metadata.name"],
        [(".metadata.name", "pattern")],
    ),
    ("long-name", {}, "n" * 64, ["metadata.name"], [(".metadata.name", "maxLength")]),
    (
        # CEL rules run only once the schema holds: a case of its own.
        "bad-event-endpoint-name",
        {
            "eventEndpoints": {
                "Bad_Name": {
                    "url": "https://e.example/",
                    "events": ["lead.stored"],
                    "secretRef": {"name": "s"},
                }
            }
        },
        "",
        ["an endpoint name is lower-case letters, digits and '-' (1-40)"],
        [(".spec.eventEndpoints", "cel:an endpoint name is lower-case letters, digits and '-' (1-40)")],
    ),
    (
        "bad-event-endpoints",
        {
            "eventEndpoints": {
                "no-secret": {"url": "ftp://example.com", "events": ["lead.eaten"]},
                "too-many": {
                    "url": "https://example.com/" + "u" * 2048,
                    "events": ["lead.stored"] * 6,
                    "secretRef": {"name": "Not_A_Name", "key": "bad key"},
                },
                "empty-ref": {
                    "url": "https://example.com/e",
                    "events": ["call.placed"],
                    "secretRef": {"name": "", "key": ""},
                },
                "long-ref": {
                    "url": "https://example.com/e",
                    "events": ["call.placed"],
                    "secretRef": {"name": "n" * 254, "key": "k" * 254},
                },
                "no-fields": {},
                **{
                    f"e{i}": {
                        "url": "https://example.com/e",
                        "events": ["call.placed"],
                        "secretRef": {"name": "s"},
                    }
                    for i in range(6)
                },
            }
        },
        "",
        [
            "spec.eventEndpoints: Too many: 11",
            "spec.eventEndpoints.no-secret.secretRef: Required value",
            'spec.eventEndpoints.no-secret.url: Invalid value: "ftp://example.com"',
            'spec.eventEndpoints.no-secret.events[0]: Unsupported value: "lead.eaten"',
            "spec.eventEndpoints.too-many.url: Too long",
            "spec.eventEndpoints.too-many.events: Too many: 6",
            'spec.eventEndpoints.too-many.secretRef.name: Invalid value: "Not_A_Name"',
            'spec.eventEndpoints.too-many.secretRef.key: Invalid value: "bad key"',
            "spec.eventEndpoints.empty-ref.secretRef.name: Invalid value",
            "spec.eventEndpoints.empty-ref.secretRef.key: Invalid value",
            "spec.eventEndpoints.long-ref.secretRef.name: Too long",
            "spec.eventEndpoints.long-ref.secretRef.key: Too long",
            "spec.eventEndpoints.no-fields.url: Required value",
        ],
        [
            (".spec.eventEndpoints", "maxProperties"),
            (".spec.eventEndpoints{}", "required"),
            (".spec.eventEndpoints{}.url", "pattern"),
            (".spec.eventEndpoints{}.url", "maxLength"),
            (".spec.eventEndpoints{}.events", "maxItems"),
            (".spec.eventEndpoints{}.events[]", "enum"),
            (".spec.eventEndpoints{}.secretRef", "required"),
            (".spec.eventEndpoints{}.secretRef.name", "pattern"),
            (".spec.eventEndpoints{}.secretRef.name", "minLength"),
            (".spec.eventEndpoints{}.secretRef.name", "maxLength"),
            (".spec.eventEndpoints{}.secretRef.key", "pattern"),
            (".spec.eventEndpoints{}.secretRef.key", "minLength"),
            (".spec.eventEndpoints{}.secretRef.key", "maxLength"),
        ],
    ),
    (
        "bad-source-ranges",
        {
            "sources": {
                "salesforce": {"allowedSourceRanges": ["10.0.0.0/8"] * 101},
                "api": {"allowedSourceRanges": ["1" * 44]},
            }
        },
        "",
        [
            "spec.sources.salesforce.allowedSourceRanges: Too many: 101",
            "spec.sources.api.allowedSourceRanges[0]: Too long",
        ],
        [
            (".spec.sources.*.allowedSourceRanges", "maxItems"),
            (".spec.sources.*.allowedSourceRanges[]", "maxLength"),
        ],
    ),
    (
        "request-log-retention-low",
        {"policy": {"requestLogRetentionDays": 0}},
        "",
        ["spec.policy.requestLogRetentionDays: Invalid value: 0"],
        [(".spec.policy.requestLogRetentionDays", "minimum")],
    ),
    (
        "request-log-retention-high",
        {"policy": {"requestLogRetentionDays": 91}},
        "",
        ["spec.policy.requestLogRetentionDays: Invalid value: 91"],
        [(".spec.policy.requestLogRetentionDays", "maximum")],
    ),
]


def test_every_crd_rule_has_a_rejected_example() -> None:
    covered = {rule for *_, rules in CASES for rule in rules}
    assert crd_rules() - covered == set()
    assert covered - crd_rules() == set(), "a case claims a rule the CRD does not have"


@pytest.mark.parametrize(("spec", "name", "expected"), [c[1:4] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_tenants_are_refused(
    apiserver: ApiServer, ns: str, spec: Obj, name: str, expected: list[str]
) -> None:
    name = name or f"bad-{uuid.uuid4().hex[:6]}"
    proc = apply(apiserver, tenant(name, ns, spec))
    assert proc.returncode != 0
    missing = [e for e in expected if e not in proc.stderr]
    assert missing == [], proc.stderr
    got = apiserver.kubectl("get", "tenants", "-n", ns, "-o", "name", check=False)
    assert name not in got.stdout, "nothing is stored"


def test_unknown_fields_are_refused_not_pruned(apiserver: ApiServer, ns: str) -> None:
    proc = apply(apiserver, tenant("unknown-field", ns, {"colour": "blue", "limits": {"callsPerSecond": 1}}))
    assert proc.returncode != 0
    assert 'unknown field "spec.colour"' in proc.stderr
    assert 'unknown field "spec.limits.callsPerSecond"' in proc.stderr


GOOD = [
    {"budget": {"dailyUsd": 100}},
    {
        "budget": {"dailyUsd": "2500.5"},
        "policy": {
            "windowStart": "00:00",
            "windowEnd": "24:00",
            "fallbackTimezone": "America/Chicago",
            "defaultRegion": "GB",
        },
    },
    {"policy": {"windowStart": "08:30", "windowEnd": "23:59", "fallbackTimezone": ""}},
    {
        "providers": {
            "crm": {
                "type": "salesforce",
                "secretRef": {"name": "sf"},
                "options": {"instance_url": "https://x.my.salesforce.com"},
            },
            "dialer": {"type": "twilio", "secretRef": {"name": "tw", "key": "auth_token"}},
            "llm": {"type": "openai", "secretRef": {"name": "oa"}},
        }
    },
    {"providers": {"crm": {"type": "local"}, "dialer": {"type": "simulator"}, "llm": {"type": "rules"}}},
]


@pytest.mark.parametrize("spec", GOOD, ids=lambda s: json.dumps(s)[:40])
def test_good_tenants_pass_a_server_side_dry_run(apiserver: ApiServer, ns: str, spec: Obj) -> None:
    name = f"good-{uuid.uuid4().hex[:6]}"
    proc = apply(apiserver, tenant(name, ns, spec), extra=("--dry-run=server", "-o", "json"))
    assert proc.returncode == 0, proc.stderr
    defaulted = json.loads(proc.stdout)
    assert defaulted["spec"]["limits"]["callsPerDay"] == 1000, "the server applied the defaults"
    assert defaulted["spec"]["policy"]["maxDialAttempts"] == 3
    got = apiserver.kubectl("get", "tenant", name, "-n", ns, check=False)
    assert got.returncode != 0, "a dry run stores nothing"


def test_unquoted_whole_dollars_are_kept_and_the_yaml_float_refused(apiserver: ApiServer, ns: str) -> None:
    text = (
        "apiVersion: leadflow.dev/v1alpha1\nkind: Tenant\n"
        f"metadata: {{name: money, namespace: {ns}}}\nspec:\n  budget: {{dailyUsd: 100.00}}\n"
    )
    proc = apiserver.kubectl("apply", "-f", "-", input=text, check=False)
    assert proc.returncode == 0, proc.stderr
    stored = json.loads(apiserver.kubectl("get", "tenant", "money", "-n", ns, "-o", "json").stdout)
    assert stored["spec"]["budget"]["dailyUsd"] == 100
    proc = apiserver.kubectl("apply", "-f", "-", input=text.replace("100.00", "100.50"), check=False)
    assert proc.returncode != 0
    assert "must be of type integer,string" in proc.stderr


def test_printer_columns_status_subresource_and_watch(apiserver: ApiServer, ns: str) -> None:
    name = f"cols-{uuid.uuid4().hex[:6]}"
    tenants = f"/apis/leadflow.dev/v1alpha1/namespaces/{ns}/tenants"
    since = apiserver.get_json(tenants)["metadata"]["resourceVersion"]
    assert (
        apply(apiserver, tenant(name, ns, {"paused": True, "budget": {"dailyUsd": "42.00"}})).returncode == 0
    )
    # Status is its own subresource: a spec apply cannot write it, a status patch can.
    patch = json.dumps({"status": {"phase": "Paused", "usage": {"callsToday": 7, "spendTodayUsd": "1.50"}}})
    apiserver.kubectl("patch", "tenant", name, "-n", ns, "--subresource=status", "--type=merge", "-p", patch)
    table = apiserver.kubectl("get", "tenant", name, "-n", ns).stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:8] == ["NAME", "PAUSED", "PHASE", "CALLS", "TODAY", "SPEND", "BUDGET", "AGE"]
    assert row.split()[:6] == [name, "true", "Paused", "7", "1.50", "42.00"]
    apiserver.kubectl("delete", "tenant", name, "-n", ns)
    # A watch from the resourceVersion listed before: every change, in order.
    url = f"{apiserver.front_url}{tenants}?watch=1&resourceVersion={since}&timeoutSeconds=2"
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 (http, loopback)
        events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    kinds = [e["type"] for e in events if e["object"]["metadata"]["name"] == name]
    assert kinds == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1]["object"]["status"]["phase"] == "Paused"


def test_explain_shows_the_field_descriptions(apiserver: ApiServer) -> None:
    out = apiserver.kubectl("explain", "tenants.spec.policy.windowEnd").stdout
    assert "24:00" in out
    out = apiserver.kubectl("explain", "tenants.spec.budget").stdout
    assert "dailyUsd" in out

"""The chart installed to a public URL: Ingress and HTTPRoute with TLS, the webhook URLs in
NOTES.txt, egress NetworkPolicies, and examples/ (values and the Secrets they name) that lint
strictly and validate against Kubernetes 1.29-1.36."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.chart.k8s_tools import ensure_tools
from tests.chart.rendering import (
    CHART_DIR,
    EXAMPLE_VALUES,
    KUBE_VERSIONS,
    REPO_ROOT,
    load_values,
    name,
    objects,
    of_kind,
    render,
)

Obj = dict[str, Any]
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "HTTPRoute"}
API_VERSIONS = ("keda.sh/v1alpha1", "monitoring.coreos.com/v1", "gateway.networking.k8s.io/v1")
examples = pytest.mark.parametrize("values_file", EXAMPLE_VALUES, ids=lambda p: p.name)


def test_examples_exist() -> None:
    assert {p.name for p in EXAMPLE_VALUES} >= {"values-ingress.yaml", "values-httproute.yaml"}


@examples
def test_helm_lint_strict_passes_for_each_example(values_file: Path) -> None:
    helm_bin = ensure_tools() / "helm"
    args = [
        str(helm_bin),
        "lint",
        str(CHART_DIR),
        "--strict",
        "--kube-version",
        "1.31.0",
        "-f",
        str(values_file),
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout


@examples
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_examples_render_valid_kubernetes(values_file: Path, kube_version: str) -> None:
    objs = objects(load_values(values_file))
    for obj in objs:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, kube_version, strict=True)


@examples
def test_examples_name_the_secrets_of_examples_secrets_yaml(values_file: Path) -> None:
    secrets = {
        d["metadata"]["name"]: set(d["stringData"])
        for d in yaml.safe_load_all((REPO_ROOT / "examples" / "secrets.yaml").read_text())
    }
    values = load_values(values_file)
    defaults = {
        "externalDatabase": "database-url",
        "externalRedis": "redis-url",
        "piiHashKey": "pii-hash-key",
    }
    for key, default_key in defaults.items():
        ref = values[key]["existingSecret"]
        assert default_key in secrets[ref], (key, ref)
    demo = list(yaml.safe_load_all((REPO_ROOT / "examples" / "tenant-demo.yaml").read_text()))
    secrets |= {d["metadata"]["name"]: set(d["stringData"]) for d in demo if d["kind"] == "Secret"}
    (tenant,) = [d for d in demo if d["kind"] == "Tenant"]
    for entry in [*tenant["spec"]["sources"].values(), *tenant["spec"]["providers"].values()]:
        if "secretRef" in entry:
            assert entry["secretRef"]["name"] in secrets


def test_ingress_with_tls_to_the_gateway_service() -> None:
    objs = objects(load_values(REPO_ROOT / "examples" / "values-ingress.yaml"))
    ingress = of_kind(objs, "Ingress")[name("gateway")]
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "leads-example-com-tls", "hosts": ["leads.example.com"]}]
    (rule,) = spec["rules"]
    assert rule["host"] == "leads.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = of_kind(objs, "Service")[backend["name"]]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert of_kind(objs, "HTTPRoute") == {}


def test_httproute_on_a_gateway_to_the_gateway_service() -> None:
    objs = objects(load_values(REPO_ROOT / "examples" / "values-httproute.yaml"))
    route = of_kind(objs, "HTTPRoute")[name("gateway")]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [
        {"name": "public", "namespace": "gateway-system", "sectionName": "https"}
    ]
    assert route["spec"]["hostnames"] == ["leads.example.com"]
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    service = of_kind(objs, "Service")[backend["name"]]
    assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}
    assert of_kind(objs, "Ingress") == {}


WEBHOOKS = ("form", "meta", "hubspot", "salesforce", "zapier", "marketo", "google")


@pytest.mark.parametrize(
    ("values", "base"),
    [
        ({"publicBaseUrl": "https://leads.example.com"}, "https://leads.example.com"),
        (load_values(REPO_ROOT / "examples" / "values-ingress.yaml"), "https://leads.example.com"),
        ({"ingress": {"enabled": True, "hosts": ["in.example.org"]}}, "http://in.example.org"),
        (load_values(REPO_ROOT / "examples" / "values-httproute.yaml"), "https://leads.example.com"),
    ],
)
def test_notes_print_each_sources_webhook_url(values: Obj, base: str) -> None:
    notes = render(values)["leadflow/templates/NOTES.txt"]
    for source in WEBHOOKS:
        assert f"{base}/v1/webhooks/TENANT/{source}" in notes
    assert f"{base}/v1/leads" in notes
    assert f"{base}/v1/calls/TENANT/status" in notes
    assert "apiKeySecret" in notes
    assert "port-forward" not in notes


def test_every_webhook_route_in_notes_exists_in_the_gateway() -> None:
    from leadflow_gateway.app import create_app
    from leadflow_gateway.settings import GatewaySettings

    paths = {getattr(r, "path", "") for r in create_app(GatewaySettings()).routes}
    notes = render({"publicBaseUrl": "https://x.example"})["leadflow/templates/NOTES.txt"]
    for line in notes.splitlines():
        if "https://x.example/v1/" in line:
            url = line.split("https://x.example", 1)[1].split()[0].replace("TENANT", "{tenant}")
            assert url in paths, url


@pytest.mark.parametrize(
    "bad",
    [
        {"ingress": {"enabled": True}},
        {"httpRoute": {"enabled": True}},
        {"publicBaseUrl": "leads.example.com"},
        {"networkPolicy": {"egress": {"providers": {"cidrs": ["everywhere"], "ports": [443]}}}},
    ],
)
def test_schema_refuses_incomplete_public_url_values(bad: Obj) -> None:
    with helm.Chart.load(CHART_DIR) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(bad)


def test_egress_policies_dns_datastores_mesh_providers_and_kube_api() -> None:
    objs = objects(load_values(REPO_ROOT / "examples" / "values-httproute.yaml"))
    policies = of_kind(objs, "NetworkPolicy")
    base = policies[name("egress")]["spec"]
    assert base["policyTypes"] == ["Egress"]
    ports = [sorted((p["port"], p["protocol"]) for p in rule.get("ports", [])) for rule in base["egress"]]
    assert [(53, "TCP"), (53, "UDP")] in ports
    assert [(5432, "TCP")] in ports
    assert [(6379, "TCP")] in ports
    mesh = [rule for rule in base["egress"] if "ports" not in rule]
    assert mesh[0]["to"][0]["podSelector"]["matchLabels"] == base["podSelector"]["matchLabels"]
    providers = policies[name("egress-providers")]["spec"]
    (expr,) = providers["podSelector"]["matchExpressions"]
    assert "gateway" in expr["values"]
    assert all(v == "gateway" or v.startswith("worker-") for v in expr["values"])
    cidrs = [peer["ipBlock"]["cidr"] for peer in providers["egress"][0]["to"]]
    assert cidrs == ["54.172.60.0/23", "34.203.250.0/23", "13.0.0.0/8"]
    # Tenants' event endpoints: the dispatcher only, HTTPS to public addresses only.
    events = policies[name("egress-events")]["spec"]
    assert events["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "dispatcher"
    (to,) = events["egress"][0]["to"]
    assert to["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "169.254.0.0/16", "127.0.0.0/8"} <= set(to["ipBlock"]["except"])
    assert events["egress"][0]["ports"] == [{"port": 443, "protocol": "TCP"}]
    kube = policies[name("egress-kube-api")]["spec"]
    assert kube["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert kube["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}}]
    # Every worker Deployment is covered by the providers policy.
    workers = [
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for d in of_kind(objs, "Deployment").values()
        if d["metadata"]["labels"]["app.kubernetes.io/component"].startswith("worker-")
    ]
    assert set(workers) <= set(expr["values"])

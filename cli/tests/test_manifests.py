"""Tenant manifests: the kubectl-shaped YAML the CLI applies, mapped to the proto."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from leadflow_cli.manifests import build_tenant, load_documents, parse_tenants

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

META_SECRET = f"""
apiVersion: v1
kind: Secret
metadata: {{name: acme-meta}}
data:
  appSecret: {base64.b64encode(b"s3cret").decode()}
  verifyToken: {base64.b64encode(b"tok").decode()}
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_design_example_maps_to_the_proto_with_its_secret(tmp_path: Path) -> None:
    files = [_write(tmp_path, "t.yaml", DESIGN_EXAMPLE), _write(tmp_path, "s.yaml", META_SECRET)]
    docs = load_documents(files)
    tenants, secrets = parse_tenants(docs)
    tenant = build_tenant(tenants[0], secrets)
    assert tenant.name == "acme-hvac"
    assert tenant.display_name == "ACME HVAC"
    assert tenant.limits.calls_per_minute == 10
    assert tenant.limits.concurrent_calls == 5
    assert tenant.budget.daily_usd == "100.00"
    # A keyed secretRef gives the source that one key, under its own name and as `secret`.
    assert dict(tenant.sources["meta"].secrets) == {"app_secret": "s3cret", "secret": "s3cret"}
    assert list(tenant.sources) == ["meta"]


def test_secret_ref_without_key_takes_every_key(tmp_path: Path) -> None:
    text = DESIGN_EXAMPLE.replace("{name: acme-meta, key: appSecret}", "{name: acme-meta}")
    tenants, secrets = parse_tenants(
        load_documents([_write(tmp_path, "t.yaml", text), _write(tmp_path, "s.yaml", META_SECRET)])
    )
    tenant = build_tenant(tenants[0], secrets)
    assert dict(tenant.sources["meta"].secrets) == {"app_secret": "s3cret", "verify_token": "tok"}


def test_a_missing_secret_is_named(tmp_path: Path) -> None:
    tenants, secrets = parse_tenants(load_documents([_write(tmp_path, "t.yaml", DESIGN_EXAMPLE)]))
    with pytest.raises(ValueError, match="acme-meta"):
        build_tenant(tenants[0], secrets)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("callsPerMinute: 10", "callsPerMinute: -1", "callsPerMinute"),
        ('dailyUsd: "100.00"', 'dailyUsd: "lots"', "dailyUsd"),
        ("paused: false", "paused: false\n  colour: blue", "colour"),
        ("sources: {meta:", "sources: {myspace:", "unknown source"),
        ("name: acme-hvac", "name: Acme_HVAC", "DNS-1123"),
        ("leadflow.dev/v1alpha1", "leadflow.dev/v9", "apiVersion"),
    ],
)
def test_bad_specs_are_refused_with_the_field_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = DESIGN_EXAMPLE.replace(old, new)
    assert text != DESIGN_EXAMPLE
    with pytest.raises(ValueError, match=message):
        parse_tenants(load_documents([_write(tmp_path, "t.yaml", text)]))


def test_the_demo_tenant_shipped_with_make_run_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    tenants, secrets = parse_tenants(load_documents([root / "examples" / "tenant-demo.yaml"]))
    tenant = build_tenant(tenants[0], secrets)
    assert tenant.name == "demo"
    assert tenant.sources["form"].secrets["form_key"] == "demo-form-key"
    assert tenant.policy.dial_delay_seconds["emergency"] == 0

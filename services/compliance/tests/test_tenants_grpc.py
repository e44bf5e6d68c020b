"""TenantAdminService against the real process: apply, secrets, keys, source lookups."""

from __future__ import annotations

import grpc
import pytest

from leadflow.v1 import lead_pb2, tenants_pb2, tenants_pb2_grpc
from leadflow_core.tenant_spec import TenantSpec, to_proto
from services.compliance.tests.conftest import make_tenant

SPEC = {
    "displayName": "ACME HVAC",
    "sources": {"meta": {"secretRef": {"name": "acme-meta", "key": "appSecret"}, "options": {"x": "1"}}},
    "budget": {"dailyUsd": "50.00"},
}


def test_apply_is_idempotent_and_bumps_revision_only_on_change(
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
) -> None:
    spec = TenantSpec.model_validate(SPEC)
    tenant = to_proto("acme-idem", spec, {"meta": {"appSecret": "s3cret"}})
    first = admin.ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=tenant, issue_api_key=True))
    assert first.created
    assert first.changed
    assert first.api_key.startswith("lf_")
    again = admin.ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=tenant, issue_api_key=True))
    assert not again.created
    assert not again.changed
    assert again.api_key == ""
    assert again.tenant.revision == first.tenant.revision
    tenant.limits.calls_per_minute = 99
    changed = admin.ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=tenant))
    assert changed.changed
    assert changed.tenant.revision == first.tenant.revision + 1
    assert changed.tenant.limits.calls_per_minute == 99


def test_secrets_are_write_only_except_internal_lookup(
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
) -> None:
    tenant = to_proto("acme-secrets", TenantSpec.model_validate(SPEC), {"meta": {"appSecret": "s3cret"}})
    admin.ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=tenant))
    read = admin.GetTenant(tenants_pb2.GetTenantRequest(name="acme-secrets")).tenant
    assert dict(read.sources["meta"].secrets) == {}
    assert list(read.sources["meta"].secret_names) == ["app_secret"]
    assert "s3cret" not in str(read)
    cfg = admin.GetSourceConfig(tenants_pb2.GetSourceConfigRequest(tenant="acme-secrets", source="meta"))
    assert cfg.config.secrets["app_secret"] == "s3cret"
    assert cfg.source == lead_pb2.SOURCE_META
    assert cfg.tenant_active


@pytest.mark.parametrize(("tenant", "source"), [("nobody-here", "meta"), ("acme-secrets2", "hubspot")])
def test_source_config_not_found(
    admin: tenants_pb2_grpc.TenantAdminServiceStub, tenant: str, source: str
) -> None:
    admin.ApplyTenant(
        tenants_pb2.ApplyTenantRequest(tenant=to_proto("acme-secrets2", TenantSpec.model_validate(SPEC)))
    )
    with pytest.raises(grpc.RpcError) as err:
        admin.GetSourceConfig(tenants_pb2.GetSourceConfigRequest(tenant=tenant, source=source))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_api_keys_map_to_their_tenant_and_die_with_it(admin: tenants_pb2_grpc.TenantAdminServiceStub) -> None:
    tenant = make_tenant(admin)
    key = admin.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=tenant.name)).api_key
    auth = admin.AuthenticateApiKey(tenants_pb2.AuthenticateApiKeyRequest(api_key=key))
    assert auth.tenant == tenant.name
    with pytest.raises(grpc.RpcError) as err:
        admin.AuthenticateApiKey(tenants_pb2.AuthenticateApiKeyRequest(api_key=key + "x"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    rotated = admin.CreateApiKey(
        tenants_pb2.CreateApiKeyRequest(name=tenant.name, revoke_existing=True)
    ).api_key
    with pytest.raises(grpc.RpcError):
        admin.AuthenticateApiKey(tenants_pb2.AuthenticateApiKeyRequest(api_key=key))
    assert (
        admin.AuthenticateApiKey(tenants_pb2.AuthenticateApiKeyRequest(api_key=rotated)).tenant == tenant.name
    )
    gone = admin.DeactivateTenant(tenants_pb2.DeactivateTenantRequest(name=tenant.name)).tenant
    assert not gone.active
    with pytest.raises(grpc.RpcError):
        admin.AuthenticateApiKey(tenants_pb2.AuthenticateApiKeyRequest(api_key=rotated))
    # Kept for audit: still readable, listed with inactive ones only.
    assert admin.GetTenant(tenants_pb2.GetTenantRequest(name=tenant.name)).tenant.name == tenant.name
    listed = admin.ListTenants(tenants_pb2.ListTenantsRequest()).tenants
    assert tenant.name not in {t.name for t in listed}
    listed_all = admin.ListTenants(tenants_pb2.ListTenantsRequest(include_inactive=True)).tenants
    assert tenant.name in {t.name for t in listed_all}


def test_invalid_tenant_is_refused_with_field(admin: tenants_pb2_grpc.TenantAdminServiceStub) -> None:
    from leadflow.v1 import tenant_pb2
    from leadflow_core.grpc_errors import field_violations

    with pytest.raises(grpc.RpcError) as err:
        admin.ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=tenant_pb2.Tenant(name="Bad_Name")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(err.value)[0][0] == "tenant.name"


def test_pause_and_usage(admin: tenants_pb2_grpc.TenantAdminServiceStub) -> None:
    tenant = make_tenant(admin)
    paused = admin.SetPaused(
        tenants_pb2.SetPausedRequest(name=tenant.name, paused=True, reason="test")
    ).tenant
    assert paused.paused
    assert paused.revision == tenant.revision + 1
    usage = admin.GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=tenant.name))
    assert usage.usage.calls_today == 0
    assert usage.daily_budget_usd == "100.00"

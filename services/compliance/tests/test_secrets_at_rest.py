"""Tenant secrets encrypted at rest, against a real compliance process with a database and a
keyring of its own (rotation re-encrypts every row of the database it serves)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import create_engine, text

from leadflow.v1 import tenant_pb2, tenants_pb2, tenants_pb2_grpc
from leadflow_core.access_policy import CLI, GATEWAY, JOBS_WORKER
from leadflow_core.db import normalise_url
from leadflow_core.grpc_clients import channel
from leadflow_core.keyring import Sealed, add_key, is_sealed
from leadflow_core.migrations import SERVICES_WITH_SCHEMA, upgrade
from leadflow_core.testing import (
    REPO_ROOT,
    ServiceProcess,
    create_database,
    drop_database,
    python_module,
    service_env,
)

META_SECRET = "meta-app-secret-7Qz9W1"
VERIFY_TOKEN = "verify-token-Lm3Xp0"
CRM_TOKEN = "crm-client-secret-Vb62Kd"


@pytest.fixture(scope="module")
def private(
    pg_admin_url: str, redis_url: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, str, Path]]:
    name = f"lfsecrets_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = create_database(pg_admin_url, name)
    for service in SERVICES_WITH_SCHEMA:
        upgrade(service, url)
    work = tmp_path_factory.mktemp("secrets")
    keyring = work / "keyring"
    add_key(keyring, "k1")
    env = service_env(
        url,
        redis_url,
        redis_prefix,
        {"LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:0", "LEADFLOW_KEYRING_DIR": str(keyring)},
    )
    proc = ServiceProcess("compliance", python_module("leadflow_compliance"), env, work).start()
    yield proc, url, keyring
    proc.stop()
    drop_database(pg_admin_url, name)


def _tenant(name: str) -> tenant_pb2.Tenant:
    tenant = tenant_pb2.Tenant(name=name, display_name=name)
    tenant.sources["meta"].secrets["app_secret"] = META_SECRET
    tenant.sources["meta"].secrets["verify_token"] = VERIFY_TOKEN
    tenant.sources["meta"].options["page_id"] = "123"
    tenant.providers["crm"] = "salesforce"
    tenant.provider_configs["crm"].secrets["client_secret"] = CRM_TOKEN
    return tenant


def _dump(url: str) -> str:
    """Every row of every table, as text: what a database dump would show."""
    engine = create_engine(normalise_url(url))
    out: list[str] = []
    with engine.connect() as conn:
        tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
        for table in list(tables):
            query = text(f'SELECT t::text FROM "{table}" t')  # noqa: S608 - names from pg_tables
            out += [str(r[0]) for r in conn.execute(query)]
    engine.dispose()
    return "\n".join(out)


def _specs(url: str) -> dict[str, dict[str, object]]:
    engine = create_engine(normalise_url(url))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, spec FROM compliance_tenants")).all()
    engine.dispose()
    return {r[0]: r[1] if isinstance(r[1], dict) else json.loads(r[1]) for r in rows}


def _sealed_values(spec: dict[str, object]) -> list[str]:
    out: list[str] = []
    for section in ("sources", "provider_configs"):
        for cfg in (spec.get(section) or {}).values():  # type: ignore[attr-defined]
            out += list((cfg.get("secrets") or {}).values())
    return out


def _stub(proc: ServiceProcess, identity: str) -> tenants_pb2_grpc.TenantAdminServiceStub:
    return tenants_pb2_grpc.TenantAdminServiceStub(channel(proc.addr, 30.0, identity=identity))


def test_database_holds_no_plaintext_secret_and_reads_show_fingerprints(
    private: tuple[ServiceProcess, str, Path],
) -> None:
    proc, url, _ = private
    cli = _stub(proc, CLI)
    cli.ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=_tenant("acme-sealed")))
    dump = _dump(url)
    assert "acme-sealed" in dump  # the dump does show the tenant ...
    for secret in (META_SECRET, VERIFY_TOKEN, CRM_TOKEN):
        assert secret not in dump  # ... but none of its secrets
    assert all(is_sealed(v) for v in _sealed_values(_specs(url)["acme-sealed"]))

    read = cli.GetTenant(tenants_pb2.GetTenantRequest(name="acme-sealed")).tenant
    meta = read.sources["meta"]
    assert dict(meta.secrets) == {}
    assert list(meta.secret_names) == ["app_secret", "verify_token"]
    assert set(meta.secret_fingerprints) == {"app_secret", "verify_token"}
    assert META_SECRET not in str(read)
    # Re-applying the same values changes nothing: no new revision, same fingerprints.
    again = cli.ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=_tenant("acme-sealed")))
    assert not again.changed
    # Only the components that use a secret may read it.
    gateway = _stub(proc, GATEWAY)
    source = gateway.GetSourceConfig(tenants_pb2.GetSourceConfigRequest(tenant="acme-sealed", source="meta"))
    assert source.config.secrets["app_secret"] == META_SECRET
    worker = _stub(proc, JOBS_WORKER)
    provider = worker.GetProviderConfig(
        tenants_pb2.GetProviderConfigRequest(tenant="acme-sealed", kind="crm")
    )
    assert provider.config.secrets["client_secret"] == CRM_TOKEN
    for call in (
        lambda: cli.GetSourceConfig(tenants_pb2.GetSourceConfigRequest(tenant="acme-sealed", source="meta")),
        lambda: cli.GetProviderConfig(tenants_pb2.GetProviderConfigRequest(tenant="acme-sealed", kind="crm")),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_sealed_value_is_refused_as_input(private: tuple[ServiceProcess, str, Path]) -> None:
    proc, url, _ = private
    cli = _stub(proc, CLI)
    cli.ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=_tenant("acme-victim")))
    stolen = _specs(url)["acme-victim"]["sources"]["meta"]["secrets"]["app_secret"]  # type: ignore[index]
    thief = tenant_pb2.Tenant(name="acme-thief")
    thief.sources["meta"].secrets["app_secret"] = stolen
    with pytest.raises(grpc.RpcError) as err:
        cli.ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=thief))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "acme-thief" not in _specs(url)


def test_rotation_reencrypts_every_row_and_old_keys_stop_working(
    private: tuple[ServiceProcess, str, Path],
) -> None:
    proc, url, keyring = private
    cli = _stub(proc, CLI)
    for name in ("acme-rot-1", "acme-rot-2"):
        cli.ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=_tenant(name)))
    before = _specs(url)
    assert {Sealed.parse(v).kid for s in before.values() for v in _sealed_values(s)} == {"k1"}

    add_key(keyring, "k2")  # the greatest id becomes the primary; no restart
    env = {**os.environ, "LEADFLOW_COMPLIANCE_ADDR": proc.addr}
    done = subprocess.run(
        [sys.executable, "-m", "leadflow_cli", "secrets", "rotate"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "under k2; keys in use: k2" in done.stdout
    after = _specs(url)
    assert set(after) == set(before)
    for spec in after.values():
        values = _sealed_values(spec)
        assert values
        assert {Sealed.parse(v).kid for v in values} == {"k2"}
    assert CRM_TOKEN not in _dump(url)

    (keyring / "k1.key").unlink()
    gateway = _stub(proc, GATEWAY)
    source = gateway.GetSourceConfig(tenants_pb2.GetSourceConfigRequest(tenant="acme-rot-1", source="meta"))
    assert source.config.secrets["app_secret"] == META_SECRET
    # A value still sealed under the removed key no longer opens.
    engine = create_engine(normalise_url(url))
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE compliance_tenants SET spec = CAST(:spec AS json) WHERE name = 'acme-rot-2'"),
            {"spec": json.dumps(before["acme-rot-2"])},
        )
    engine.dispose()
    with pytest.raises(grpc.RpcError) as err:
        gateway.GetSourceConfig(tenants_pb2.GetSourceConfigRequest(tenant="acme-rot-2", source="meta"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert META_SECRET not in (err.value.details() or "")

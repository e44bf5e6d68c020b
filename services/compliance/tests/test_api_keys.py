"""Named, scoped API keys against the real compliance process: shown once, listed by name and
prefix, revoked one at a time and refused at once (also by a second compliance process that had
the key verified and cached), last use recorded; and keys from before migration 0004 still work."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime

import grpc
import pytest
import sqlalchemy as sa

from leadflow.v1 import tenants_pb2, tenants_pb2_grpc
from leadflow_compliance.api_key_registry import ApiKeyRegistry
from leadflow_core.db import make_engine, make_sessionmaker
from leadflow_core.grpc_clients import channel
from leadflow_core.migrations import upgrade
from leadflow_core.testing import (
    ServiceProcess,
    create_database,
    drop_database,
    python_module,
    service_env,
    wait_for,
)
from services.compliance.tests.conftest import make_tenant


def _auth(admin: tenants_pb2_grpc.TenantAdminServiceStub, key: str) -> tenants_pb2.AuthenticateApiKeyResponse:
    return admin.AuthenticateApiKey(tenants_pb2.AuthenticateApiKeyRequest(api_key=key))


def _refused(admin: tenants_pb2_grpc.TenantAdminServiceStub, key: str) -> bool:
    try:
        _auth(admin, key)
    except grpc.RpcError as err:
        code = err.code()
    else:
        return False
    assert code == grpc.StatusCode.UNAUTHENTICATED
    return True


def test_named_scoped_keys_are_listed_by_name_and_prefix_never_the_secret(
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
) -> None:
    tenant = make_tenant(admin).name
    made = admin.CreateApiKey(
        tenants_pb2.CreateApiKeyRequest(name=tenant, key_name="zapier-prod", scopes=["ingest"])
    )
    assert made.api_key.startswith(made.info.prefix + "_")
    assert list(made.info.scopes) == ["ingest"]
    both = admin.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=tenant, key_name="reporting"))
    assert list(both.info.scopes) == ["ingest", "read"]

    assert list(_auth(admin, made.api_key).scopes) == ["ingest"]
    assert list(_auth(admin, both.api_key).scopes) == ["ingest", "read"]

    listed = admin.ListApiKeys(tenants_pb2.ListApiKeysRequest(name=tenant))
    by_name = {k.name: k for k in listed.keys}
    assert set(by_name) == {"zapier-prod", "reporting"}
    assert by_name["zapier-prod"].prefix == f"lf_{made.key_id}"
    text = str(listed)
    for key in (made.api_key, both.api_key):
        assert key not in text
        assert key.rsplit("_", 1)[1] not in text
    # Last use is recorded (in batches; listing writes this process's pending ones first).
    assert by_name["zapier-prod"].HasField("last_used_at")

    with pytest.raises(grpc.RpcError) as dup:
        admin.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=tenant, key_name="zapier-prod"))
    assert dup.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as bad:
        admin.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=tenant, key_name="x", scopes=["admin"]))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_revoking_one_key_refuses_it_at_once_everywhere_and_keeps_the_others(
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tenant = make_tenant(admin).name
    other_tenant = make_tenant(admin).name
    gone = admin.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=tenant, key_name="old-crm")).api_key
    kept = admin.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=tenant, key_name="web")).api_key
    gone_id = _auth(admin, gone).key_id

    # A second compliance process that has verified (and cached) the key before it is revoked.
    env = service_env(database_url, redis_url, redis_prefix, {"LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:0"})
    second = ServiceProcess(
        "compliance-2", python_module("leadflow_compliance"), env, tmp_path_factory.mktemp("compliance2")
    ).start()
    ch = channel(second.addr, default_timeout=30.0)
    try:
        admin2 = tenants_pb2_grpc.TenantAdminServiceStub(ch)
        assert _auth(admin2, gone).tenant == tenant

        with pytest.raises(grpc.RpcError) as foreign:
            admin.RevokeApiKey(tenants_pb2.RevokeApiKeyRequest(tenant=other_tenant, key_id=gone_id))
        assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
        assert _auth(admin, gone).tenant == tenant

        info = admin.RevokeApiKey(tenants_pb2.RevokeApiKeyRequest(tenant=tenant, key_id=gone_id))
        assert info.HasField("revoked_at")
        assert _refused(admin, gone)
        # The other process hears of it by notification (milliseconds), not after its cache period.
        wait_for(lambda: _refused(admin2, gone), timeout=10, what="revocation seen by the second process")
        assert _auth(admin, kept).tenant == tenant
        assert _auth(admin2, kept).tenant == tenant
        # Revoking again changes nothing; the name may be reused for a new key.
        again = admin.RevokeApiKey(tenants_pb2.RevokeApiKeyRequest(tenant=tenant, key_id=gone_id))
        assert again.revoked_at == info.revoked_at
        admin.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=tenant, key_name="old-crm"))
    finally:
        ch.close()
        assert second.stop() == 0, second.tail()


def test_keys_from_before_named_keys_migrate_and_keep_working(pg_admin_url: str) -> None:
    name = f"lftest_keys_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_admin_url, name)
    try:
        upgrade("compliance", url, "0003_state_dnc_lists")
        old_key = "lf_" + secrets.token_urlsafe(32)
        old_digest = hashlib.sha256(old_key.encode()).hexdigest()
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO compliance_api_keys (key_id, tenant, key_hash, created_at) "
                    "VALUES ('k1', 'acme', :h, now())"
                ),
                {"h": old_digest},
            )
        upgrade("compliance", url)
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT * FROM compliance_api_keys")).mappings().one()
        assert old_digest not in str(dict(stored))
        assert stored["key_hash"].startswith("scrypt-sha256$")
        assert stored["name"] == "key-k1"
        registry = ApiKeyRegistry(make_sessionmaker(engine))
        now = datetime.now(UTC)
        found = registry.verify(old_key, now)
        assert found is not None
        assert (found.tenant, found.scopes) == ("acme", ("ingest", "read"))
        assert registry.verify(old_key + "x", now) is None
        registry.flush_usage()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT last_used_at FROM compliance_api_keys")).scalar() is not None
        engine.dispose()
    finally:
        drop_database(pg_admin_url, name)


def test_many_keys_checked_in_one_call_answer_as_one_by_one(
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
) -> None:
    first, second = make_tenant(admin).name, make_tenant(admin).name
    a = admin.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=first, key_name="a", scopes=["ingest"]))
    b = admin.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=second, key_name="b"))
    gone = admin.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=first, key_name="gone"))
    admin.RevokeApiKey(tenants_pb2.RevokeApiKeyRequest(tenant=first, key_id=gone.key_id))
    unknown = f"lf_{secrets.token_hex(4)}_{secrets.token_urlsafe(24)}"
    keys = [a.api_key, gone.api_key, unknown, "", b.api_key, a.api_key]
    results = admin.AuthenticateApiKeys(tenants_pb2.AuthenticateApiKeysRequest(api_keys=keys)).results
    assert [(r.tenant, r.key_id, list(r.scopes)) for r in results] == [
        (first, a.key_id, ["ingest"]),
        ("", "", []),
        ("", "", []),
        ("", "", []),
        (second, b.key_id, ["ingest", "read"]),
        (first, a.key_id, ["ingest"]),
    ]
    # The same answers as the single-key check, which refuses the bad ones outright.
    for key, result in zip(keys, results, strict=True):
        if result.tenant:
            assert _auth(admin, key) == result
        else:
            assert _refused(admin, key)
    with pytest.raises(grpc.RpcError) as too_many:
        admin.AuthenticateApiKeys(tenants_pb2.AuthenticateApiKeysRequest(api_keys=[a.api_key] * 257))
    assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT

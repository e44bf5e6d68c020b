"""TenantAdminService's API-key methods: create (shown once), list, revoke one, authenticate."""

from __future__ import annotations

from datetime import datetime

import grpc

from leadflow.v1 import tenant_pb2, tenants_pb2
from leadflow_compliance import api_key_hashing
from leadflow_compliance.api_key_registry import ApiKeyRegistry, DuplicateKeyName, key_info
from leadflow_compliance.models import TenantRow
from leadflow_compliance.repository import Repository
from leadflow_core import grpc_errors
from leadflow_core.grpc_authz import audit_actor
from leadflow_core.timestamps import utcnow

_MAX_NAME = 100

# The gateway sends at most its batch size (64 by default); anything far beyond is a mistake.
MAX_KEYS_PER_CALL = 256


class ApiKeyRpcs:
    """Mixed into TenantAdminServicer, which provides `repo`, `api_keys`, `_row` and the cache."""

    repo: Repository
    api_keys: ApiKeyRegistry

    def _row(self, context: grpc.ServicerContext, name: str) -> TenantRow:
        raise NotImplementedError  # the servicer this is mixed into provides it

    def _cached_tenant(self, name: str) -> tenant_pb2.Tenant | None:
        raise NotImplementedError  # the servicer this is mixed into provides it

    def CreateApiKey(
        self, request: tenants_pb2.CreateApiKeyRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.CreateApiKeyResponse:
        row = self._row(context, request.name)
        if not row.active:
            grpc_errors.failed_precondition(context, "TENANT_INACTIVE", f"tenant {row.name!r} is deactivated")
        key_name = request.key_name
        if len(key_name) > _MAX_NAME or not key_name.isprintable() or key_name != key_name.strip():
            grpc_errors.invalid_argument(
                context, "key_name", f"up to {_MAX_NAME} printable characters, no outer spaces"
            )
        scopes = api_key_hashing.normalise_scopes(list(request.scopes))
        if scopes is None:
            known = list(api_key_hashing.SCOPES)
            grpc_errors.invalid_argument(context, "scopes", f"each must be one of {known}")
        now = utcnow()
        try:
            key, stored = self.api_keys.create(row.name, key_name, scopes, now, request.revoke_existing)
        except DuplicateKeyName:
            grpc_errors.invalid_argument(
                context, "key_name", "another valid key of this tenant has that name; revoke it first"
            )
        self.repo.audit(
            tenant=row.name,
            at=now,
            actor=audit_actor(),
            action="api_key.create",
            detail={
                "key_id": stored.key_id,
                "name": stored.name,
                "scopes": list(scopes),
                "revoke_existing": request.revoke_existing,
            },
        )
        return tenants_pb2.CreateApiKeyResponse(api_key=key, key_id=stored.key_id, info=key_info(stored))

    def ListApiKeys(
        self, request: tenants_pb2.ListApiKeysRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.ListApiKeysResponse:
        row = self._row(context, request.name)
        # Last uses noted by this process so far are part of the answer.
        self.api_keys.flush_usage()
        return tenants_pb2.ListApiKeysResponse(keys=[key_info(k) for k in self.api_keys.list(row.name)])

    def RevokeApiKey(
        self, request: tenants_pb2.RevokeApiKeyRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.ApiKeyInfo:
        row = self._row(context, request.tenant)
        now = utcnow()
        revoked = self.api_keys.revoke(row.name, request.key_id, now) if request.key_id else None
        if revoked is None:
            grpc_errors.not_found(context, "api key", f"{row.name}/{request.key_id}")
        if revoked.revoked_at == now:
            self.repo.audit(
                tenant=row.name,
                at=now,
                actor=audit_actor(),
                action="api_key.revoke",
                detail={"key_id": revoked.key_id, "name": revoked.name},
            )
        return key_info(revoked)

    def AuthenticateApiKey(
        self, request: tenants_pb2.AuthenticateApiKeyRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.AuthenticateApiKeyResponse:
        result = self._authenticated(request.api_key, utcnow())
        if not result.tenant:
            grpc_errors.unauthenticated(context, "unknown or revoked API key")
        return result

    def AuthenticateApiKeys(
        self, request: tenants_pb2.AuthenticateApiKeysRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.AuthenticateApiKeysResponse:
        if len(request.api_keys) > MAX_KEYS_PER_CALL:
            grpc_errors.invalid_argument(context, "api_keys", f"at most {MAX_KEYS_PER_CALL} keys per call")
        now = utcnow()
        return tenants_pb2.AuthenticateApiKeysResponse(
            results=[self._authenticated(api_key, now) for api_key in request.api_keys]
        )

    def _authenticated(self, api_key: str, now: datetime) -> tenants_pb2.AuthenticateApiKeyResponse:
        """The key's tenant, id and scopes; empty when the key is unknown or revoked, or its
        tenant is gone or inactive."""
        key = self.api_keys.verify(api_key, now) if api_key else None
        tenant = self._cached_tenant(key.tenant) if key is not None else None
        if key is None or tenant is None or not tenant.active:
            return tenants_pb2.AuthenticateApiKeyResponse()
        return tenants_pb2.AuthenticateApiKeyResponse(tenant=key.tenant, key_id=key.key_id, scopes=key.scopes)

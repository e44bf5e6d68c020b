"""The tenant gRPC API of compliance, as the operator calls it (asyncio, deadlines, request ids)."""

from __future__ import annotations

import grpc
import grpc.aio

from leadflow.v1 import tenant_pb2, tenants_pb2, tenants_pb2_grpc
from leadflow_core.grpc_clients import aio_channel, request_metadata

# Reconnect within seconds once compliance is back (gRPC's default backoff grows to 2 minutes).
_RECONNECT = (("grpc.initial_reconnect_backoff_ms", 500), ("grpc.max_reconnect_backoff_ms", 5000))


class TenantAdmin:
    def __init__(self, addr: str, timeout: float) -> None:
        self._channel = aio_channel(addr, _RECONNECT)
        self._stub = tenants_pb2_grpc.TenantAdminServiceStub(self._channel)
        self._timeout = timeout

    async def apply(self, tenant: tenant_pb2.Tenant) -> tenants_pb2.ApplyTenantResponse:
        return await self._stub.ApplyTenant(
            tenants_pb2.ApplyTenantRequest(tenant=tenant), timeout=self._timeout, metadata=request_metadata()
        )

    async def get(self, name: str) -> tenant_pb2.Tenant | None:
        """The tenant compliance holds (secrets redacted), or None when it holds none."""
        try:
            resp = await self._stub.GetTenant(
                tenants_pb2.GetTenantRequest(name=name), timeout=self._timeout, metadata=request_metadata()
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return resp.tenant

    async def usage(self, name: str) -> tenants_pb2.GetTenantUsageResponse:
        return await self._stub.GetTenantUsage(
            tenants_pb2.GetTenantUsageRequest(name=name), timeout=self._timeout, metadata=request_metadata()
        )

    async def deactivate(self, name: str) -> bool:
        """False when compliance never had this tenant."""
        try:
            await self._stub.DeactivateTenant(
                tenants_pb2.DeactivateTenantRequest(name=name),
                timeout=self._timeout,
                metadata=request_metadata(),
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def create_api_key(self, name: str) -> tenants_pb2.CreateApiKeyResponse:
        return await self._stub.CreateApiKey(
            tenants_pb2.CreateApiKeyRequest(name=name), timeout=self._timeout, metadata=request_metadata()
        )

    async def close(self) -> None:
        await self._channel.close()

"""Channels and stubs to the services the CLI talks to, addressed by LEADFLOW_*_ADDR."""

from __future__ import annotations

import grpc

from leadflow.v1 import compliance_pb2_grpc, dispatcher_pb2_grpc, tenants_pb2_grpc
from leadflow_core.grpc_clients import channel
from leadflow_core.settings import CommonSettings


def _channel(addr: str) -> grpc.Channel:
    return channel(addr, default_timeout=30.0)


def tenant_admin(settings: CommonSettings) -> tenants_pb2_grpc.TenantAdminServiceStub:
    return tenants_pb2_grpc.TenantAdminServiceStub(_channel(settings.compliance_addr))


def compliance(settings: CommonSettings) -> compliance_pb2_grpc.ComplianceServiceStub:
    return compliance_pb2_grpc.ComplianceServiceStub(_channel(settings.compliance_addr))


def dispatcher(settings: CommonSettings) -> dispatcher_pb2_grpc.DispatcherServiceStub:
    return dispatcher_pb2_grpc.DispatcherServiceStub(_channel(settings.dispatcher_addr))

"""Channels and stubs to the services the CLI talks to, addressed by LEADFLOW_*_ADDR."""

from __future__ import annotations

import getpass
import os

import grpc

from leadflow.v1 import admin_pb2_grpc, compliance_pb2_grpc, dispatcher_pb2_grpc, tenants_pb2_grpc
from leadflow_core.grpc_clients import channel
from leadflow_core.settings import CommonSettings

# The services this command opened channels to, so a failure can say which one to check.
OPENED: list[str] = []


def _channel(addr: str, service: str) -> grpc.Channel:
    OPENED.append(service)
    return channel(addr, default_timeout=30.0)


def tenant_admin(settings: CommonSettings) -> tenants_pb2_grpc.TenantAdminServiceStub:
    return tenants_pb2_grpc.TenantAdminServiceStub(_channel(settings.compliance_addr, "compliance"))


def compliance(settings: CommonSettings) -> compliance_pb2_grpc.ComplianceServiceStub:
    return compliance_pb2_grpc.ComplianceServiceStub(_channel(settings.compliance_addr, "compliance"))


def dispatcher(settings: CommonSettings) -> dispatcher_pb2_grpc.DispatcherServiceStub:
    return dispatcher_pb2_grpc.DispatcherServiceStub(_channel(settings.dispatcher_addr, "dispatcher"))


def admin(settings: CommonSettings) -> admin_pb2_grpc.AdminServiceStub:
    """AdminService is hosted by the dispatcher."""
    return admin_pb2_grpc.AdminServiceStub(_channel(settings.dispatcher_addr, "dispatcher"))


def actor() -> tuple[tuple[str, str | bytes], ...]:
    """Who runs this command, for the audit log: LEADFLOW_ACTOR or the OS user."""
    from leadflow_core.caller_identity import ACTOR_HEADER

    try:
        name = os.environ.get("LEADFLOW_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return ((ACTOR_HEADER, name),)

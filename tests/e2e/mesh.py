"""The whole mesh as real processes: compliance, dispatcher, workers and gateway on port 0."""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from leadflow.v1 import (
    compliance_pb2,
    compliance_pb2_grpc,
    dispatcher_pb2,
    dispatcher_pb2_grpc,
    lead_pb2,
    tenants_pb2,
    tenants_pb2_grpc,
)
from leadflow_core import timestamps
from leadflow_core.grpc_clients import channel
from leadflow_core.tenant_spec import TenantSpec, to_proto
from leadflow_core.testing import ServiceProcess, service_env, wait_for


@dataclass
class Mesh:
    database_url: str
    redis_url: str
    redis_prefix: str
    workdir: Path
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    channels: list[grpc.Channel] = field(default_factory=list)
    api_keys: dict[str, str] = field(default_factory=dict)
    _gateway_stubs: (
        tuple[compliance_pb2_grpc.ComplianceServiceStub, dispatcher_pb2_grpc.DispatcherServiceStub] | None
    ) = None

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.processes['gateway'].port}"

    def metrics_url(self, name: str) -> str:
        """The process's metrics/health port (never its public one)."""
        path = self.workdir / f"{name}.metrics.port"
        # Workers are started without waiting for a port: theirs appears once they consume.
        port = wait_for(lambda: path.exists() and path.read_text(), timeout=60, what=f"{name}'s metrics port")
        return f"http://127.0.0.1:{port}"

    def _channel(self, name: str) -> grpc.Channel:
        ch = channel(self.processes[name].addr, default_timeout=10.0)
        self.channels.append(ch)
        return ch

    def tenant_admin(self) -> tenants_pb2_grpc.TenantAdminServiceStub:
        return tenants_pb2_grpc.TenantAdminServiceStub(self._channel("compliance"))

    def compliance(self) -> compliance_pb2_grpc.ComplianceServiceStub:
        return compliance_pb2_grpc.ComplianceServiceStub(self._channel("compliance"))

    def dispatcher(self) -> dispatcher_pb2_grpc.DispatcherServiceStub:
        return dispatcher_pb2_grpc.DispatcherServiceStub(self._channel("dispatcher"))

    def apply_tenant(self, name: str, spec: dict[str, object], secrets: dict[str, dict[str, str]]) -> str:
        """Create a tenant and return its first API key."""
        tenant = to_proto(name, TenantSpec.model_validate(spec), secrets)
        reply = self.tenant_admin().ApplyTenant(
            tenants_pb2.ApplyTenantRequest(tenant=tenant, issue_api_key=True)
        )
        assert reply.api_key, "a new tenant must get an API key"
        self.api_keys[name] = reply.api_key
        return reply.api_key

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.tail(200)}" for n, p in self.processes.items())

    def submit_as_gateway(self, lead: lead_pb2.Lead) -> str:
        """What the gateway does for a lead: evaluate it with compliance, then store it with
        the dispatcher; returns the lead id."""
        if self._gateway_stubs is None:
            self._gateway_stubs = (self.compliance(), self.dispatcher())
        compliance, dispatcher = self._gateway_stubs
        decision = compliance.Evaluate(
            compliance_pb2.EvaluateRequest(lead=lead, purpose=compliance_pb2.EVALUATION_PURPOSE_INGEST)
        ).decision
        reply = dispatcher.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=lead, decision=decision))
        return str(reply.lead_id)


def consented_lead(
    tenant: str,
    phone: str,
    *,
    email: str = "ada@example.com",
    last_name: str = "Lovelace",
    vendor_lead_id: str = "",
    urgency: lead_pb2.Urgency.ValueType = lead_pb2.URGENCY_HIGH,
    message: str = "need a quote for a new furnace",
) -> lead_pb2.Lead:
    """An API lead with verified consent (disclosure, seller, time and a form submission)."""
    return lead_pb2.Lead(
        tenant=tenant,
        source=lead_pb2.SOURCE_API,
        vendor_lead_id=vendor_lead_id or f"v-{uuid.uuid4().hex[:8]}",
        urgency=urgency,
        message=message,
        contact=lead_pb2.Contact(
            first_name="Ada", last_name=last_name, email=email, phone=lead_pb2.Phone(e164=phone)
        ),
        consent=lead_pb2.ConsentEvidence(
            granted=True,
            disclosure_text="I agree that ACME may call me with an autodialer.",
            page_url="https://acme.example/quote",
            ip="203.0.113.9",
            consented_at=timestamps.to_proto(timestamps.utcnow()),
            seller=tenant,
            form_submission_id=f"sub-{uuid.uuid4().hex[:8]}",
        ),
    )


def timeline_kinds(
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub, tenant: str, lead_id: str
) -> list[str]:
    reply = dispatcher.GetTimeline(dispatcher_pb2.GetTimelineRequest(tenant=tenant, lead_id=lead_id))
    return [e.kind for e in reply.events]


@contextmanager
def module_mesh(
    database_url: str, redis_url: str, redis_prefix: str, name: str, extra_env: dict[str, str]
) -> Iterator[Mesh]:
    """A test module's own mesh: a work directory and a Redis key prefix of its own."""
    with (
        tempfile.TemporaryDirectory(prefix=f"leadflow-{name}-") as tmp,
        running_mesh(database_url, redis_url, f"{redis_prefix}{name}:", Path(tmp), extra_env) as mesh,
    ):
        yield mesh


@contextmanager
def running_mesh(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Mesh]:
    env = service_env(database_url, redis_url, redis_prefix, extra_env)
    mesh = Mesh(database_url, redis_url, redis_prefix, workdir)
    py = sys.executable

    def start(name: str, module: str, more: dict[str, str], wait_port: bool = True) -> ServiceProcess:
        ports = {"LEADFLOW_METRICS_PORT_FILE": str(workdir / f"{name}.metrics.port")}
        proc = ServiceProcess(name, [py, "-m", module], {**env, **ports, **more}, workdir)
        mesh.processes[name] = proc
        return proc.start(wait_port=wait_port)

    try:
        compliance = start("compliance", "leadflow_compliance", {"LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:0"})
        dispatcher = start(
            "dispatcher",
            "leadflow_dispatcher",
            {
                "LEADFLOW_COMPLIANCE_ADDR": compliance.addr,
                "LEADFLOW_DISPATCHER_ADDR": "127.0.0.1:0",
                "LEADFLOW_DISPATCHER_METRICS_ADDR": "127.0.0.1:0",
            },
        )
        gateway = start(
            "gateway",
            "leadflow_gateway",
            {
                "LEADFLOW_COMPLIANCE_ADDR": compliance.addr,
                "LEADFLOW_DISPATCHER_ADDR": dispatcher.addr,
                # A test that needs the gateway's address up front (the dispatcher's replay
                # target) gives it; else port 0.
                "LEADFLOW_GATEWAY_ADDR": (extra_env or {}).get("LEADFLOW_GATEWAY_ADDR", "127.0.0.1:0"),
            },
        )
        start(
            "workers",
            "leadflow_enrichment",
            {
                "LEADFLOW_COMPLIANCE_ADDR": compliance.addr,
                "LEADFLOW_DISPATCHER_ADDR": dispatcher.addr,
                "LEADFLOW_PUBLIC_BASE_URL": f"http://127.0.0.1:{gateway.port}",
            },
            wait_port=False,
        )
        yield mesh
    finally:
        for ch in mesh.channels:
            ch.close()
        for proc in reversed(list(mesh.processes.values())):
            proc.stop()

"""Real compliance, dispatcher and gateway processes on port 0, tenants applied over gRPC, and
the checks that a request left nothing behind (no row, no job, no queued message)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import redis
from sqlalchemy import Engine, create_engine, text

import services.gateway.tests.gateway_vendors as v
from leadflow.v1 import compliance_pb2_grpc, dispatcher_pb2_grpc, tenants_pb2, tenants_pb2_grpc
from leadflow_core.db import normalise_url
from leadflow_core.grpc_clients import channel
from leadflow_core.tenant_spec import TenantSpec, to_proto
from leadflow_core.testing import ServiceProcess, service_env
from tests.fakes.meta_graph import GraphState, serve_graph

DISPATCHER_TABLES = ("dispatcher_leads", "dispatcher_events", "dispatcher_jobs", "dispatcher_call_statuses")


def all_sources_spec(**policy: Any) -> dict[str, Any]:
    return {
        "displayName": "Gateway test tenant",
        "policy": {"defaultRegion": "US", **policy},
        "sources": {
            "api": {},
            "meta": {"secretRef": {"name": "meta"}},
            "hubspot": {"secretRef": {"name": "hubspot"}},
            "salesforce": {"options": {"allowed_org_ids": v.SF_ORG_ID}},
            "google": {"secretRef": {"name": "google"}},
            "zapier": {
                "secretRef": {"name": "zapier"},
                "fieldMap": {
                    "Lead Phone": "contact.phone",
                    "Lead Name": "full_name",
                    "Zap Run": "vendor_lead_id",
                },
            },
            "marketo": {
                "secretRef": {"name": "marketo"},
                "options": {"secret_header": "X-Marketo-Token"},
                "fieldMap": {"leadId": "vendor_lead_id", "phoneNumber": "phone", "firstName": "first_name"},
            },
            "form": {
                "secretRef": {"name": "form"},
                "options": {
                    "allowed_origins": "https://acme.example",
                    "disclosure_text": "By submitting you agree ACME may call you using an autodialer.",
                },
            },
            "calls": {"secretRef": {"name": "calls"}},
            "sms": {"secretRef": {"name": "sms"}},
            "email": {"secretRef": {"name": "email"}},
        },
    }


SECRETS = {
    "meta": {
        "app_secret": v.META_APP_SECRET,
        "verify_token": v.META_VERIFY_TOKEN,
        "page_access_token": v.META_PAGE_TOKEN,
    },
    "hubspot": {"client_secret": v.HUBSPOT_CLIENT_SECRET},
    "google": {"google_key": v.GOOGLE_KEY},
    "zapier": {"shared_secret": v.ZAPIER_SECRET},
    "marketo": {"shared_secret": v.MARKETO_SECRET},
    "form": {"form_key": v.FORM_KEY},
    "calls": {"auth_token": v.TWILIO_AUTH_TOKEN},
    "sms": {"auth_token": v.TWILIO_AUTH_TOKEN},
    "email": {"webhook_secret": v.WEBHOOK_SECRET},
}


@dataclass
class Harness:
    compliance: ServiceProcess
    dispatcher: ServiceProcess
    gateway: ServiceProcess
    graph: GraphState
    graph_url: str
    db: Engine
    redis: redis.Redis
    redis_prefix: str
    env: dict[str, str]
    workdir: Path
    api_keys: dict[str, str] = field(default_factory=dict)
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}"

    def _channel(self, proc: ServiceProcess) -> grpc.Channel:
        ch = channel(proc.addr, default_timeout=15.0)
        self.channels.append(ch)
        return ch

    def admin(self) -> tenants_pb2_grpc.TenantAdminServiceStub:
        return tenants_pb2_grpc.TenantAdminServiceStub(self._channel(self.compliance))

    def compliance_stub(self) -> compliance_pb2_grpc.ComplianceServiceStub:
        return compliance_pb2_grpc.ComplianceServiceStub(self._channel(self.compliance))

    def dispatch(self) -> dispatcher_pb2_grpc.DispatcherServiceStub:
        return dispatcher_pb2_grpc.DispatcherServiceStub(self._channel(self.dispatcher))

    def apply(self, name: str, spec: dict[str, Any], secrets: dict[str, dict[str, str]]) -> str:
        tenant = to_proto(name, TenantSpec.model_validate(spec), secrets)
        reply = self.admin().ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=tenant, issue_api_key=True))
        self.api_keys[name] = reply.api_key
        return reply.api_key

    def rows(self, tenant: str) -> dict[str, int]:
        with self.db.connect() as conn:
            return {
                t: int(
                    conn.execute(
                        text(f"SELECT COUNT(*) FROM {t} WHERE tenant = :t"),  # noqa: S608 - our own table names
                        {"t": tenant},
                    ).scalar_one()
                )
                for t in DISPATCHER_TABLES
            }

    def jobs(self, tenant: str, lead_id: str) -> int:
        with self.db.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT COUNT(*) FROM dispatcher_jobs WHERE tenant = :t AND lead_id = :l"),
                    {"t": tenant, "l": lead_id},
                ).scalar_one()
            )

    def queued_messages(self, tenant: str) -> int:
        """Dramatiq messages (queued or delayed) that name this tenant."""
        needle = f'"{tenant}"'.encode()
        count = 0
        for key in self.redis.scan_iter(match=f"{self.redis_prefix}dramatiq*", count=1000):
            if self.redis.type(key) == b"hash":
                count += sum(1 for value in self.redis.hvals(key) if needle in value)
        return count

    def assert_nothing_left(self, tenant: str) -> None:
        assert self.rows(tenant) == dict.fromkeys(DISPATCHER_TABLES, 0)
        assert self.queued_messages(tenant) == 0

    def start_gateway(self, name: str, extra: dict[str, str]) -> ServiceProcess:
        # Its own metrics-port file: the shared gateway's must keep naming the shared gateway.
        own = {"LEADFLOW_METRICS_PORT_FILE": str(self.workdir / f"{name}.metrics.port")}
        proc = ServiceProcess(
            name, [sys.executable, "-m", "leadflow_gateway"], {**self.env, **own, **extra}, self.workdir
        )
        return proc.start()


def gateway_env(compliance: str, dispatcher: str, graph_url: str) -> dict[str, str]:
    return {
        "LEADFLOW_COMPLIANCE_ADDR": compliance,
        "LEADFLOW_DISPATCHER_ADDR": dispatcher,
        "LEADFLOW_GATEWAY_ADDR": "127.0.0.1:0",
        "LEADFLOW_META_GRAPH_URL": graph_url,
        "LEADFLOW_META_GRAPH_ATTEMPTS": "2",
        "LEADFLOW_RATE_LIMIT_IP_PER_MINUTE": "100000",
        "LEADFLOW_RATE_LIMIT_TENANT_PER_MINUTE": "100000",
        # Tenants are applied right before use: no stale negative cache between tests.
        "LEADFLOW_SOURCE_CACHE_SECONDS": "0.2",
    }


@contextmanager
def running(database_url: str, redis_url: str, redis_prefix: str, workdir: Path) -> Iterator[Harness]:
    base = service_env(database_url, redis_url, redis_prefix)
    py = sys.executable
    with ExitStack() as stack:
        graph_url, graph = stack.enter_context(serve_graph(v.META_PAGE_TOKEN))
        procs: list[ServiceProcess] = []
        stack.callback(lambda: [p.stop() for p in reversed(procs)])

        def start(name: str, module: str, env: dict[str, str]) -> ServiceProcess:
            proc = ServiceProcess(name, [py, "-m", module], {**base, **env}, workdir)
            procs.append(proc)
            return proc.start()

        compliance = start(
            "compliance",
            "leadflow_compliance",
            {"LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:0", "LEADFLOW_COMPLIANCE_METRICS_ADDR": "127.0.0.1:0"},
        )
        dispatcher = start(
            "dispatcher",
            "leadflow_dispatcher",
            {
                "LEADFLOW_COMPLIANCE_ADDR": compliance.addr,
                "LEADFLOW_DISPATCHER_ADDR": "127.0.0.1:0",
                "LEADFLOW_DISPATCHER_METRICS_ADDR": "127.0.0.1:0",
            },
        )
        env = {
            **base,
            **gateway_env(compliance.addr, dispatcher.addr, graph_url),
            # Free ports: another run's gateway may hold the default metrics port.
            "LEADFLOW_GATEWAY_METRICS_ADDR": "127.0.0.1:0",
            "LEADFLOW_METRICS_PORT_FILE": str(workdir / "gateway.metrics.port"),
        }
        gateway = start("gateway", "leadflow_gateway", env)
        db = create_engine(normalise_url(database_url))
        stack.callback(db.dispose)
        client = redis.Redis.from_url(redis_url)
        stack.callback(client.close)
        h = Harness(compliance, dispatcher, gateway, graph, graph_url, db, client, redis_prefix, env, workdir)
        stack.callback(lambda: [ch.close() for ch in h.channels])
        h.apply("acme", all_sources_spec(), SECRETS)
        h.apply("refused", all_sources_spec(), SECRETS)
        h.apply("api-only", {"sources": {"api": {}}}, {})
        yield h

"""Wires the compliance process: storage, Redis accounts, the rule table, both gRPC services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import redis
from sqlalchemy import Engine

from leadflow.v1 import compliance_pb2, compliance_pb2_grpc, tenants_pb2, tenants_pb2_grpc
from leadflow_compliance.accounting import Accounts
from leadflow_compliance.api_key_registry import NOTE_PREFIX as API_KEY_NOTE
from leadflow_compliance.api_key_registry import ApiKeyRegistry, UsageFlusher
from leadflow_compliance.compliance_service import ComplianceServicer
from leadflow_compliance.decision_metrics import DecisionMetricsInterceptor
from leadflow_compliance.decisions import Decider
from leadflow_compliance.providers import (
    AllConsentProofs,
    ConsentProof,
    HttpConsentProof,
    HttpReassignedNumbers,
    JornayaLeadId,
    NoReassignedData,
    ReassignedNumbers,
)
from leadflow_compliance.repository import Repository
from leadflow_compliance.rule_table import default_table
from leadflow_compliance.settings import ComplianceSettings
from leadflow_compliance.tenant_service import TenantAdminServicer, TenantCache
from leadflow_core import keyring
from leadflow_core.db import make_engine, make_sessionmaker
from leadflow_core.grpc_server import RunningServer, create_server
from leadflow_core.tenant_changes import TenantChangeListener, announce

SERVICE_NAMES = (
    compliance_pb2.DESCRIPTOR.services_by_name["ComplianceService"].full_name,
    tenants_pb2.DESCRIPTOR.services_by_name["TenantAdminService"].full_name,
)


@dataclass
class Compliance:
    running: RunningServer
    engine: Engine
    redis: redis.Redis
    listener: TenantChangeListener | None = None
    usage: UsageFlusher | None = None

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        if self.usage is not None:
            self.usage.stop()
        self.engine.dispose()
        self.redis.close()


def build_providers(settings: ComplianceSettings) -> tuple[ReassignedNumbers, ConsentProof]:
    reassigned: ReassignedNumbers = NoReassignedData()
    if settings.reassigned_numbers_url:
        reassigned = HttpReassignedNumbers(
            settings.reassigned_numbers_url, settings.reassigned_numbers_api_key
        )
    # The LeadiD shape check costs nothing and needs no account, so it always runs.
    checks: list[ConsentProof] = [JornayaLeadId(settings.jornaya_url, settings.jornaya_api_key)]
    if settings.trustedform_api_key:
        checks.append(HttpConsentProof(settings.trustedform_api_key, settings.trustedform_base_url))
    return reassigned, AllConsentProofs(checks)


def start(settings: ComplianceSettings) -> Compliance:
    # Hot RPC path: no ping round trip per checkout (see make_engine).
    engine = make_engine(settings.database_url, pre_ping=False)
    repo = Repository(make_sessionmaker(engine))
    client = redis.Redis.from_url(settings.redis_url)
    accounts = Accounts(client, settings, settings.reservation_ttl_seconds)
    reassigned, proof = build_providers(settings)
    decider = Decider(
        repo,
        default_table(),
        settings.pii_hash_key,
        reassigned,
        proof,
        timedelta(seconds=settings.pause_retry_seconds),
    )
    listener: TenantChangeListener | None = None
    if TenantChangeListener.supported(settings.database_url):
        listener = TenantChangeListener(settings.database_url, lambda name: changed(name))
    cache = TenantCache(
        repo,
        listening_ttl_seconds=settings.tenant_cache_seconds,
        announce=lambda name: announce(engine, name),
        listening=listener.listening if listener is not None else None,
    )
    api_keys = ApiKeyRegistry(
        repo.sessions,
        announce=lambda note: announce(engine, note),
        listening=listener.listening if listener is not None else None,
        cache_seconds=settings.api_key_cache_seconds,
    )

    def changed(note: str | None) -> None:
        # One channel for both: a tenant's name, or `api-key:<id>` for a revoked key.
        if note is None:
            cache.drop(None)
            api_keys.drop(None)
        elif note.startswith(API_KEY_NOTE):
            api_keys.drop(note.removeprefix(API_KEY_NOTE))
        else:
            cache.drop(note)

    if listener is not None:
        listener.start()
    usage = UsageFlusher(api_keys, settings.api_key_usage_flush_seconds)
    usage.start()
    compliance = ComplianceServicer(repo, decider, accounts, engine, cache)
    tenants = TenantAdminServicer(
        repo, accounts, cache, lambda: keyring.load(settings.pii_hash_key), api_keys
    )
    running = create_server(
        settings.compliance_addr,
        [
            lambda s: compliance_pb2_grpc.add_ComplianceServiceServicer_to_server(compliance, s),
            lambda s: tenants_pb2_grpc.add_TenantAdminServiceServicer_to_server(tenants, s),
        ],
        SERVICE_NAMES,
        interceptors=[DecisionMetricsInterceptor()],
    )
    return Compliance(running, engine, client, listener, usage)

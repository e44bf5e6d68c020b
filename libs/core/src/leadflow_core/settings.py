"""Settings shared by every service; each service extends `CommonSettings` with its own."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Read from `LEADFLOW_*` environment variables; every value has a safe local default."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///var/leadflow.db",
        description="SQLAlchemy URL; postgresql+psycopg://... in production.",
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prepended to every Redis key we and Dramatiq write, so runs can share one Redis.
    redis_prefix: str = ""
    compliance_addr: str = "127.0.0.1:50051"
    dispatcher_addr: str = "127.0.0.1:50052"
    gateway_addr: str = "127.0.0.1:8080"
    log_level: str = "INFO"
    # "production" refuses test hooks: a shifted clock, caller-chosen evaluation instants
    # outside the what-if evaluation (see leadflow_core.clock).
    environment: str = "development"
    # Secret used to hash phone numbers and emails in logs and audit records.
    pii_hash_key: str = "leadflow-local-pii-key"
    # Plaintext gRPC port serving only grpc.health.v1 (kubelet's native gRPC probes cannot
    # speak mutual TLS); empty: none. Every other RPC is on the mutual-TLS port.
    health_addr: str = ""
    # Written with the bound port once the server is ready (tests bind port 0).
    port_file: str = ""
    # Seconds in-flight RPCs get to finish on SIGTERM.
    shutdown_grace_seconds: float = 10.0
    # Deadline for RPCs to our own services when the caller sets none.
    rpc_timeout_seconds: float = 5.0
    # Worker liveness, in Dramatiq's own heartbeat set: every worker process stamps it this
    # often whatever its consumers are doing (a consumer with a full prefetch stamps nothing),
    # and a process silent for the timeout is dead: the dispatcher's relay runs Dramatiq's
    # maintenance, which puts the messages it had fetched back on their queues.
    worker_heartbeat_seconds: float = 5.0
    worker_heartbeat_timeout_seconds: float = 20.0

    @property
    def worker_heartbeat_timeout_ms(self) -> int:
        return int(self.worker_heartbeat_timeout_seconds * 1000)

    @property
    def dramatiq_namespace(self) -> str:
        return f"{self.redis_prefix}dramatiq"

    def redis_key(self, *parts: str) -> str:
        return self.redis_prefix + "leadflow:" + ":".join(parts)

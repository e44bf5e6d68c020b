"""System health for AdminService: every dependency and service, reachable or not, with versions.

Each check is bounded by a short timeout and never raises: an unreachable component is reported
as unhealthy with what went wrong.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from importlib import metadata
from typing import Any

import grpc
import redis
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from leadflow.v1 import admin_pb2
from leadflow_core import tls
from leadflow_dispatcher import broker_state
from leadflow_dispatcher.settings import DispatcherSettings

TIMEOUT_SECONDS = 2.0


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _check(name: str, address: str, probe: Callable[[], tuple[str, str]]) -> admin_pb2.ComponentHealth:
    try:
        version, detail = probe()
        return admin_pb2.ComponentHealth(
            name=name, healthy=True, version=version, detail=detail, address=address
        )
    except Exception as err:  # any failure means "not healthy", said plainly
        return admin_pb2.ComponentHealth(
            name=name, healthy=False, detail=f"{type(err).__name__}: {err}"[:300], address=address
        )


def _grpc_health(addr: str) -> tuple[str, str]:
    # Our peers speak only mutual TLS: ask with this process's own certificate.
    with grpc.secure_channel(addr, tls.channel_credentials()) as ch:
        stub: Any = health_pb2_grpc.HealthStub(ch)  # grpcio-health ships no type stubs
        reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_SECONDS)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise RuntimeError(status)
    return "", status


def grpc_serving(addr: str) -> bool:
    try:
        _grpc_health(addr)
        return True
    except Exception:  # unreachable, not serving, or timed out: all "down"
        return False


def _gateway(addr: str) -> tuple[str, str]:
    base = addr if addr.startswith("http") else f"http://{addr}"
    with urllib.request.urlopen(f"{base}/readyz", timeout=TIMEOUT_SECONDS) as resp:  # noqa: S310
        ready: dict[str, Any] = json.loads(resp.read())
    with urllib.request.urlopen(f"{base}/openapi.json", timeout=TIMEOUT_SECONDS) as resp:  # noqa: S310
        version = str(json.loads(resp.read()).get("info", {}).get("version", ""))
    return version, json.dumps(ready.get("dependencies", {}), sort_keys=True)


def check_components(
    store: Any, client: redis.Redis, settings: DispatcherSettings
) -> list[admin_pb2.ComponentHealth]:
    def database() -> tuple[str, str]:
        with store.sessions() as s:
            dialect = s.get_bind().dialect.name
            query = "select version()" if dialect == "postgresql" else "select sqlite_version()"
            return str(s.execute(sa.text(query)).scalar()), dialect

    def redis_server() -> tuple[str, str]:
        info = client.info("server")
        return str(info.get("redis_version", "")), "ok"

    def workers() -> tuple[str, str]:
        live = broker_state.live_workers(client, settings.dramatiq_namespace)
        if not live:
            raise RuntimeError("no worker sent a heartbeat in the last 60 s")
        return package_version("dramatiq"), f"{len(live)} live worker processes"

    def compliance() -> tuple[str, str]:
        # Health answers carry no version; compliance's own is not guessed from ours.
        return _grpc_health(settings.compliance_addr)

    return [
        _check("database", "", database),
        _check("redis", "", redis_server),
        _check(
            "dispatcher",
            settings.dispatcher_addr,
            lambda: (package_version("leadflow-dispatcher"), "serving"),
        ),
        _check("compliance", settings.compliance_addr, compliance),
        _check("gateway", settings.gateway_addr, lambda: _gateway(settings.gateway_addr)),
        _check("workers", "", workers),
    ]

"""Channels to our own services: request id propagation, default deadlines, retries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

from leadflow_core import cost_counters, tls
from leadflow_core.grpc_interceptors import RequestContextClientInterceptor
from leadflow_core.request_context import REQUEST_ID_HEADER, current_request_id

# Transparent retries of UNAVAILABLE (a peer restarting) for every method; safe because our
# mutating RPCs are idempotent by key.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

_OPTIONS = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
]


def channel(addr: str, default_timeout: float = 5.0, identity: str | None = None) -> grpc.Channel:
    """A blocking mutual-TLS channel (workers, CLI, operator) with this process's certificate,
    or a named identity's from the TLS directory (tests, tools)."""
    base = grpc.secure_channel(addr, tls.channel_credentials(identity), options=_OPTIONS)
    if cost_counters.enabled():
        base = grpc.intercept_channel(base, cost_counters.CountingClientInterceptor())
    return grpc.intercept_channel(base, RequestContextClientInterceptor(default_timeout))


def aio_channel(
    addr: str, extra_options: Sequence[tuple[str, Any]] = (), identity: str | None = None
) -> grpc.aio.Channel:
    """An asyncio mutual-TLS channel (gateway); pass `metadata=request_metadata()` and a timeout
    per call."""
    return grpc.aio.secure_channel(
        addr, tls.channel_credentials(identity), options=[*_OPTIONS, *extra_options]
    )


def request_metadata() -> tuple[tuple[str, str], ...]:
    rid = current_request_id()
    return ((REQUEST_ID_HEADER, rid),) if rid else ()

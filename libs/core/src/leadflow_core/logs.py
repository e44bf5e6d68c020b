"""Structured JSON logs with the request id bound and PII scrubbed from every field."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from leadflow_core import clock
from leadflow_core.pii import scrub
from leadflow_core.request_context import request_id_var, tenant_var


def _add_context(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    rid = request_id_var.get()
    if rid and "request_id" not in event:
        event["request_id"] = rid
    tenant = tenant_var.get()
    if tenant and "tenant" not in event:
        event["tenant"] = tenant
    return event


def _scrub_values(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_values(v) for v in value]
    return value


def _scrub_pii(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key not in ("timestamp", "level", "request_id"):
            event[key] = _scrub_values(value)
    return event


def configure(service: str, level: str = "INFO") -> None:
    """Route structlog and stdlib logging (grpc, dramatiq, uvicorn) to one JSON stream on stderr."""
    from leadflow_core import cost_counters

    # Every service's entry point comes through here: the cost counters (off unless asked for).
    cost_counters.install(service)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_context,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _scrub_pii,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request it sends at INFO: a line per status callback, CRM write and dial,
    # which our own events already tell, at a cost the workers' profile showed (5 % of the GIL).
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.bind_contextvars(service=service)
    clock.refuse_test_clock()
    if clock.offset():
        get_logger("leadflow.clock").warning(
            "clock_shifted", offset_seconds=clock.offset().total_seconds(), now=clock.now().isoformat()
        )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger

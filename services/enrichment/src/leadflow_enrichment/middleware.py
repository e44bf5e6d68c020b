"""Dramatiq middleware: the lead's request id (message option `request_id`) and the job's lane
bound for the job."""

from __future__ import annotations

from contextvars import Token
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from leadflow_core.request_context import new_request_id, request_id_var, tenant_var
from leadflow_enrichment.lanes import is_urgent, urgent_lane


class RequestContext(Middleware):
    """Binds the request id and tenant of the message being processed to contextvars, so every
    log line and every gRPC call the job makes carries them; and its lane (urgent or bulk)."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[Token[str], Token[str], Token[bool]]] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        rid = str(message.options.get("request_id") or new_request_id())
        tenant = str(message.args[0]) if message.args else ""
        self._tokens[message.message_id] = (
            request_id_var.set(rid),
            tenant_var.set(tenant),
            urgent_lane.set(is_urgent(message.queue_name)),
        )

    def _reset(self, message: Any) -> None:
        tokens = self._tokens.pop(message.message_id, None)
        if tokens is not None:
            request_id_var.reset(tokens[0])
            tenant_var.reset(tokens[1])
            urgent_lane.reset(tokens[2])

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        self._reset(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._reset(message)

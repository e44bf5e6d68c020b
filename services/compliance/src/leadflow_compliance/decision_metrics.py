"""Decision counters, read off compliance's answers (the servicers stay free of metrics code).

`leadflow_compliance_decisions_total{method, action, tenant}` and
`leadflow_compliance_decision_reasons_total{rule}`: tenants are the operator's configured set
and rule ids come from the rule table, so both label sets are bounded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from prometheus_client import Counter

from leadflow.v1 import decision_pb2

DECISIONS = Counter(
    "leadflow_compliance_decisions_total",
    "Compliance decisions, by RPC, action (dial_now, defer, never) and tenant.",
    ["method", "action", "tenant"],
)
REASONS = Counter(
    "leadflow_compliance_decision_reasons_total",
    "Rules that shaped a decision, by rule id.",
    ["rule"],
)
OBSERVED = ("Evaluate", "ReserveCall", "EvaluateBatch")


def _action(decision: decision_pb2.Decision) -> str:
    return decision_pb2.DialAction.Name(decision.action).removeprefix("DIAL_ACTION_").lower()


def _decisions(request: Any, response: Any) -> Iterable[tuple[str, decision_pb2.Decision]]:
    if hasattr(response, "results"):  # EvaluateBatch: requests and results pair up by position
        leads = [getattr(r, "lead", None) for r in getattr(request, "requests", [])]
        for i, result in enumerate(response.results):
            if not result.HasField("response"):  # this item failed: no decision to count
                continue
            lead = leads[i] if i < len(leads) else None
            yield (lead.tenant if lead is not None else ""), result.response.decision
    elif hasattr(response, "decision"):
        lead = getattr(request, "lead", None)
        yield (lead.tenant if lead is not None else ""), response.decision


def observe(method: str, request: Any, response: Any) -> None:
    for tenant, decision in _decisions(request, response):
        DECISIONS.labels(method, _action(decision), tenant).inc()
        for reason in decision.reasons:
            REASONS.labels(reason.rule_id).inc()


class DecisionMetricsInterceptor(grpc.ServerInterceptor):
    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler is None or handler.unary_unary is None or method not in OBSERVED:
            return handler
        behaviour = handler.unary_unary

        def run(request: Any, context: grpc.ServicerContext) -> Any:
            response = behaviour(request, context)
            with contextlib.suppress(Exception):  # counting must never fail an answer
                observe(method, request, response)
            return response

        return grpc.unary_unary_rpc_method_handler(
            run,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

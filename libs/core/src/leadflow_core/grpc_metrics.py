"""Per-RPC metrics for every gRPC server: count by code, and latency, per service and method."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

HANDLED = Counter(
    "leadflow_grpc_server_handled_total",
    "RPCs completed, by service, method and status code.",
    ["service", "method", "code"],
)
LATENCY = Histogram(
    "leadflow_grpc_server_handling_seconds",
    "Time to answer an RPC (a hop of the pipeline), by service and method.",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def _split(full_method: str) -> tuple[str, str]:
    _, _, rest = full_method.partition("/")
    service, _, method = rest.partition("/")
    return service.rsplit(".", 1)[-1], method


class MetricsServerInterceptor(grpc.ServerInterceptor):
    """Unary-unary and unary-stream handlers are wrapped; streams are counted when they return."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, method = _split(handler_call_details.method)
        if service == "Health" or service.startswith("ServerReflection"):
            return handler  # probes would dominate the numbers

        def wrap(behaviour: Callable[..., Any]) -> Callable[..., Any]:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                start = time.perf_counter()
                failed = False
                try:
                    return behaviour(request, context)
                except Exception:
                    failed = True
                    raise
                finally:
                    # The code an abort or set_code left on the context.
                    status = getattr(context, "code", lambda: None)()
                    code = status.name if status is not None else ("UNKNOWN" if failed else "OK")
                    HANDLED.labels(service, method, code).inc()
                    LATENCY.labels(service, method).observe(time.perf_counter() - start)

            return run

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                wrap(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                wrap(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                wrap(handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

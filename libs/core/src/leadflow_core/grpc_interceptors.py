"""Interceptors that carry the request id across gRPC hops and log every failed RPC."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from leadflow_core import cost_counters
from leadflow_core.logs import get_logger
from leadflow_core.outages import is_outage
from leadflow_core.request_context import REQUEST_ID_HEADER, bound, current_request_id

log = get_logger("leadflow.grpc")


# Codes a servicer answers on purpose (the caller's mistake or a known state), not crashes.
_ANSWER_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    }
)


def _answered(context: grpc.ServicerContext) -> bool:
    code = context.code() if hasattr(context, "code") else None
    return code in _ANSWER_CODES


class RequestContextServerInterceptor(grpc.ServerInterceptor):
    """Binds the caller's `x-request-id` (or a new one) for the handler, and logs errors."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        metadata = dict(handler_call_details.invocation_metadata or ())
        rid = str(metadata.get(REQUEST_ID_HEADER, ""))
        method = handler_call_details.method
        cost_counters.count_served(method)

        def wrap(behavior: Callable[..., Any], streaming_response: bool) -> Callable[..., Any]:
            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                with bound(rid or None):
                    start = time.perf_counter()
                    try:
                        return behavior(request, context)
                    except Exception as err:
                        # An abort with a status (bad argument, unauthenticated, not found, ...)
                        # is an answer, logged once below without a traceback; only a crash
                        # gets one. A dependency outage is UNAVAILABLE: the caller retries,
                        # and never reads it as an answer of ours.
                        if not _answered(context):
                            if is_outage(err):
                                log.warning(
                                    "rpc_dependency_unavailable", method=method, error=type(err).__name__
                                )
                                context.abort(
                                    grpc.StatusCode.UNAVAILABLE,
                                    f"a dependency is unavailable ({type(err).__name__})",
                                )
                            log.exception("rpc_failed", method=method)
                        raise
                    finally:
                        code = context.code() if hasattr(context, "code") else None
                        if code not in (None, grpc.StatusCode.OK):
                            log.info(
                                "rpc_error",
                                method=method,
                                code=str(code),
                                ms=round((time.perf_counter() - start) * 1000, 2),
                            )

            def stream(request: Any, context: grpc.ServicerContext) -> Any:
                with bound(rid or None):
                    yield from behavior(request, context)

            return stream if streaming_response else unary

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                wrap(handler.unary_unary, False),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                wrap(handler.unary_stream, True),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                wrap(handler.stream_unary, False),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


class _ClientCallDetails(grpc.ClientCallDetails):
    def __init__(
        self,
        base: grpc.ClientCallDetails,
        metadata: tuple[tuple[str, str | bytes], ...],
        timeout: float | None,
    ):
        self.method = base.method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


class RequestContextClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
):
    """Sends the current request id, and a default deadline when the caller set none."""

    def __init__(self, default_timeout: float) -> None:
        self._default_timeout = default_timeout

    def _details(self, details: grpc.ClientCallDetails) -> _ClientCallDetails:
        metadata: list[tuple[str, str | bytes]] = [
            (k, v) for k, v in (details.metadata or ()) if k != REQUEST_ID_HEADER
        ]
        rid = current_request_id()
        if rid:
            metadata.append((REQUEST_ID_HEADER, rid))
        timeout = details.timeout if details.timeout is not None else self._default_timeout
        return _ClientCallDetails(details, tuple(metadata), timeout)

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

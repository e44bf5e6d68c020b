"""Enforces `access_policy` on every RPC from the caller's verified certificate, and binds the
caller's identity for the handler (the audit actor)."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import grpc.aio

from leadflow_core.access_policy import CLI, is_allowed
from leadflow_core.logs import get_logger
from leadflow_core.tls import SPIFFE_PREFIX

log = get_logger("leadflow.authz")

_caller: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("leadflow_caller", default=())


def peer_identities(auth_context: dict[str, list[bytes]] | Any) -> tuple[str, ...]:
    """Our identities among the peer's verified URI SANs (empty without a client certificate).

    A certificate without URI SANs may carry the SPIFFE ID as its common name: Helm's
    `genSignedCert`, which the chart uses when cert-manager is absent, cannot write URI SANs.
    """
    if not auth_context:
        return ()
    out = _ours(auth_context.get("peer_uri", ()))
    if not out:
        out = _ours(auth_context.get("x509_common_name", ()))
    return tuple(sorted(out))


def _ours(values: Any) -> list[str]:
    out: list[str] = []
    for raw in values:
        uri = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
        name = uri[len(SPIFFE_PREFIX) :]
        if uri.startswith(SPIFFE_PREFIX) and name and "/" not in name:
            out.append(name)
    return out


def caller_identities() -> tuple[str, ...]:
    """The verified identities of the peer whose RPC is being handled (empty outside one)."""
    return _caller.get()


@contextmanager
def bound_caller(identities: tuple[str, ...]) -> Iterator[None]:
    token = _caller.set(identities)
    try:
        yield
    finally:
        _caller.reset(token)


def audit_actor(claimed: str = "") -> str:
    """Who did it, for the audit log: the verified identity; a CLI user's own name is kept but
    marked claimed, since only the certificate is verified."""
    verified = "+".join(caller_identities()) or "internal"
    claimed = claimed.strip()[:80]
    if claimed and CLI in caller_identities():
        return f"{verified} (claimed: {claimed})"
    return verified


def _denial(method: str, identities: tuple[str, ...]) -> tuple[grpc.StatusCode, str]:
    if not identities:
        return grpc.StatusCode.UNAUTHENTICATED, "no verified Leadflow identity in the client certificate"
    log.warning("rpc_denied", method=method, identities=list(identities))
    return grpc.StatusCode.PERMISSION_DENIED, f"{'+'.join(identities)} may not call {method}"


def _rebuild(handler: grpc.RpcMethodHandler[Any, Any], wrap: Callable[[Any], Any]) -> Any:
    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **kw)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), **kw)
    return handler


class AuthorizationServerInterceptor(grpc.ServerInterceptor):
    """Sync servers: refuse before the handler runs unless the policy table allows the caller."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        streaming = bool(handler.unary_stream or handler.stream_stream)

        def wrap(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def check(context: grpc.ServicerContext) -> tuple[str, ...]:
                identities = peer_identities(context.auth_context())
                if not is_allowed(method, identities):
                    code, details = _denial(method, identities)
                    context.abort(code, details)
                return identities

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                with bound_caller(check(context)):
                    return behavior(request, context)

            def stream(request: Any, context: grpc.ServicerContext) -> Any:
                with bound_caller(check(context)):
                    yield from behavior(request, context)

            return stream if streaming else unary

        rebuilt: grpc.RpcMethodHandler[Any, Any] = _rebuild(handler, wrap)
        return rebuilt


class AsyncAuthorizationServerInterceptor(grpc.aio.ServerInterceptor):
    """grpc.aio servers: the same check, for coroutine handlers."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        streaming = bool(handler.unary_stream or handler.stream_stream)

        def wrap(behavior: Callable[..., Any]) -> Callable[..., Any]:
            async def check(context: grpc.aio.ServicerContext[Any, Any]) -> tuple[str, ...]:
                identities = peer_identities(context.auth_context())
                if not is_allowed(method, identities):
                    code, details = _denial(method, identities)
                    await context.abort(code, details)
                return identities

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                with bound_caller(await check(context)):
                    result = behavior(request, context)
                    return await result if hasattr(result, "__await__") else result

            async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                with bound_caller(await check(context)):
                    async for item in behavior(request, context):
                        yield item

            return stream if streaming else unary

        rebuilt: grpc.RpcMethodHandler[Any, Any] = _rebuild(handler, wrap)
        return rebuilt

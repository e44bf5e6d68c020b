"""Abort RPCs with standard status codes and `google.rpc` error details."""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "leadflow.dev"


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str, *details: object) -> NoReturn:
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)  # type: ignore[arg-type]
        packed.append(a)
    status = status_pb2.Status(code=code.value[0], message=message, details=packed)
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("unreachable")  # abort_with_status raises


def invalid_argument(context: grpc.ServicerContext, field: str, description: str) -> NoReturn:
    bad = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=description)]
    )
    _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {description}", bad)


def not_found(context: grpc.ServicerContext, resource_type: str, name: str) -> NoReturn:
    info = error_details_pb2.ResourceInfo(resource_type=resource_type, resource_name=name)
    _abort(context, grpc.StatusCode.NOT_FOUND, f"{resource_type} {name!r} not found", info)


def failed_precondition(context: grpc.ServicerContext, reason: str, message: str) -> NoReturn:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)
    _abort(context, grpc.StatusCode.FAILED_PRECONDITION, message, info)


def unauthenticated(context: grpc.ServicerContext, message: str) -> NoReturn:
    info = error_details_pb2.ErrorInfo(reason="UNAUTHENTICATED", domain=DOMAIN)
    _abort(context, grpc.StatusCode.UNAUTHENTICATED, message, info)


def unavailable(context: grpc.ServicerContext, message: str, retry_after_seconds: float = 1.0) -> NoReturn:
    retry = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=int(retry_after_seconds), nanos=0)
    )
    _abort(context, grpc.StatusCode.UNAVAILABLE, message, retry)


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """Client side: the (field, description) pairs of a BadRequest detail, if any."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type,unused-ignore]
    out: list[tuple[str, str]] = []
    if status is None:
        return out
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend((v.field, v.description) for v in bad.field_violations)
    return out


__all__ = [
    "code_pb2",
    "failed_precondition",
    "field_violations",
    "invalid_argument",
    "not_found",
    "unauthenticated",
    "unavailable",
]

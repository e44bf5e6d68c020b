"""Batch RPCs built from single-item code: each item runs against an `ItemContext`, so the
`grpc_errors` helpers that would abort the whole call fail just that item instead.

Server side: `run_item(context, fn)` gives the item's value or its `ItemError`; a single-item
RPC that wraps the batch path re-raises the very status with `abort_item(context, error)`.
Client side: `item_status(error)` says what the single RPC would have said."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from leadflow.v1 import batch_pb2

T = TypeVar("T")
_DETAILS_KEY = "grpc-status-details-bin"


class ItemAborted(Exception):
    """One item of a batch failed with this status; the batch goes on."""

    def __init__(self, status: grpc.Status) -> None:
        super().__init__(status.details)
        self.status = status


class ItemContext:
    """Stands in for the call's context while one item runs: aborts fail the item only."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        raise ItemAborted(status)

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise ItemAborted(_Status(code, details, ()))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple[Any, ...]) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def item_error(status: grpc.Status) -> batch_pb2.ItemError:
    err = batch_pb2.ItemError(code=status.code.value[0], message=status.details or "")
    for key, value in status.trailing_metadata or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        full = status_pb2.Status.FromString(value)
        err.rpc_status = value
        for detail in full.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                if bad.field_violations:
                    err.field = bad.field_violations[0].field
                    err.field_description = bad.field_violations[0].description
    return err


def run_item(
    context: grpc.ServicerContext, fn: Callable[[grpc.ServicerContext], T]
) -> T | batch_pb2.ItemError:
    """`fn(item_context)`, or the ItemError it aborted with."""
    try:
        return fn(ItemContext(context))  # type: ignore[arg-type]
    except ItemAborted as aborted:
        return item_error(aborted.status)


def status_code(error: batch_pb2.ItemError) -> grpc.StatusCode:
    return code_of(error.code)


def code_of(value: int) -> grpc.StatusCode:
    """The status code of its number (an item's `error_code`); UNKNOWN for one grpc lacks."""
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


def abort_item(context: grpc.ServicerContext, error: batch_pb2.ItemError) -> NoReturn:
    """Fail a single-item RPC exactly as the item failed (code, message, error details)."""
    if error.rpc_status:
        context.abort_with_status(rpc_status.to_status(status_pb2.Status.FromString(error.rpc_status)))
    context.abort(status_code(error), error.message)
    raise AssertionError("unreachable")


def batch_request_ids(ids: list[str]) -> tuple[tuple[str, str], ...]:
    """Client side: the request id of every item, in order, as one `x-request-id` header."""
    from leadflow_core.request_context import REQUEST_ID_HEADER

    return ((REQUEST_ID_HEADER, ",".join(ids)),) if any(ids) else ()


def item_request_ids(header: str, items: int) -> list[str | None]:
    """Server side: each item's own request id (None when the caller sent no list for them)."""
    ids = header.split(",") if header else []
    return [i or None for i in ids] if len(ids) == items else [None] * items

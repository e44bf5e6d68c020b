"""The request id and tenant that follow a lead through every hop, held in contextvars."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"

request_id_var: ContextVar[str] = ContextVar("leadflow_request_id", default="")
tenant_var: ContextVar[str] = ContextVar("leadflow_tenant", default="")


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str:
    return request_id_var.get()


@contextlib.contextmanager
def bound(request_id: str | None = None, tenant: str | None = None) -> Iterator[str]:
    """Bind a request id (a new one when empty) and tenant for the duration of a block."""
    rid = request_id or request_id_var.get() or new_request_id()
    t1 = request_id_var.set(rid)
    t2 = tenant_var.set(tenant) if tenant is not None else None
    try:
        yield rid
    finally:
        request_id_var.reset(t1)
        if t2 is not None:
            tenant_var.reset(t2)

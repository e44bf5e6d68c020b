"""The one call every reply route makes: hand the signal to compliance, which decides and stores."""

from __future__ import annotations

import re

from leadflow.v1 import compliance_pb2
from leadflow_gateway.errors import bad_request
from leadflow_gateway.ingest import Gateway

# Vendor ids and campaign names are plain ASCII tokens; anything else is a 400 naming the field.
_TOKEN = re.compile(r"^[A-Za-z0-9._:@<>+=/\-]{1,200}$", re.ASCII)


def token(value: str, field: str, required: bool = False) -> str:
    value = value.strip()
    if not value:
        if required:
            raise bad_request(field, "required")
        return ""
    if not _TOKEN.match(value):
        raise bad_request(field, "must be 1-200 ASCII letters, digits or ._:@<>+=/-")
    return value


async def signal(gw: Gateway, request: compliance_pb2.RevocationSignalRequest) -> dict[str, object]:
    reply = await gw.backends.revocation_signal(request)
    return {
        "revoked": reply.revoked,
        "matched": reply.matched or None,
        "scope": reply.scope or None,
        "revocation_id": reply.revocation_id or None,
        "duplicate": reply.duplicate,
    }

"""Who is calling an RPC, for audit records.

Today the caller names itself in the `x-leadflow-actor` metadata (the CLI sends the OS user or
`LEADFLOW_ACTOR`), so the identity is marked unverified. Once every hop is mutual TLS this one
function returns the verified peer identity instead; nothing else needs to change.
"""

from __future__ import annotations

import grpc

ACTOR_HEADER = "x-leadflow-actor"


def caller_identity(context: grpc.ServicerContext) -> str:
    claimed = ""
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_HEADER and isinstance(value, str):
            claimed = value.strip()[:120]
    peer = context.peer() or "unknown-peer"
    return f"{claimed or 'anonymous'} (unverified, {peer})"

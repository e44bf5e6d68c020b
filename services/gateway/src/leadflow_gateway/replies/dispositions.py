"""Call dispositions on the call status path: an agent desktop or IVR that posts a signed status
callback with `Disposition=do_not_call` (or another opt-out code, or the agent's free words)
revokes consent for the called number (`To`) before the status goes on to the dispatcher.
"""

from __future__ import annotations

from leadflow.v1 import compliance_pb2
from leadflow_core import timestamps
from leadflow_gateway.errors import bad_request
from leadflow_gateway.ingest import Gateway
from leadflow_gateway.replies.revoke import signal, token

FIELD = "Disposition"
MAX_CHARS = 2000


async def apply(gw: Gateway, tenant: str, params: list[tuple[str, str]], campaign: str) -> dict[str, object]:
    values = dict(params)
    disposition = values.get(FIELD, "").strip()
    if len(disposition) > MAX_CHARS:
        raise bad_request(FIELD, f"at most {MAX_CHARS} characters")
    callee = values.get("To", "").strip()
    if not callee:
        raise bad_request("To", "required with a Disposition")
    call_sid = token(values.get("CallSid", ""), "CallSid", required=True)
    req = compliance_pb2.RevocationSignalRequest(
        tenant=tenant,
        phone_e164=callee,
        channel="call_disposition",
        message_id=call_sid,
        text=disposition,
        campaign=campaign,
        actor="gateway:" + (token(values.get("AgentId", ""), "AgentId") or "disposition"),
    )
    req.received_at.CopyFrom(timestamps.to_proto(timestamps.utcnow()))
    return await signal(gw, req)


def has_disposition(params: list[tuple[str, str]]) -> bool:
    return any(k == FIELD and v.strip() for k, v in params)

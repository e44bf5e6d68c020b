"""Zapier and Marketo: JSON (or form) built by the user, a shared secret in a header, and the
tenant's field map turning any Zap or template into a Lead without code."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.requests import Request

from leadflow.v1 import lead_pb2
from leadflow_gateway import request_log, signatures
from leadflow_gateway.ascii_text import check_header_token
from leadflow_gateway.backends import SourceContext
from leadflow_gateway.body import read_body, require_media
from leadflow_gateway.errors import unauthenticated
from leadflow_gateway.fields import map_fields
from leadflow_gateway.ingest import Gateway
from leadflow_gateway.normalise import build_lead
from leadflow_gateway.sources.common import ACCEPTED_BODIES, envelope, flat_items, stored_answer

DEFAULT_HEADER = "X-Leadflow-Secret"
SOURCES: dict[str, lead_pb2.Source.ValueType] = {
    "zapier": lead_pb2.SOURCE_ZAPIER,
    "marketo": lead_pb2.SOURCE_MARKETO,
}


def check_secret(ctx: SourceContext, request: Request) -> None:
    header = ctx.option("secret_header", DEFAULT_HEADER)
    check_header_token(header, request.headers.get(header))
    expected = ctx.secret("shared_secret", "token")
    if not signatures.shared_secret_matches(expected, request.headers.get(header)):
        raise unauthenticated(f"missing or wrong {header}")


async def handle(gw: Gateway, request: Request, tenant: str, source: str) -> JSONResponse:
    await gw.limit_ip(request)
    ctx = await gw.admit(tenant, source, request)
    body = await read_body(request, gw.body_limit(ctx))
    request_log.current().secret_headers.add(ctx.option("secret_header", DEFAULT_HEADER))
    request_log.check_sender(lambda: check_secret(ctx, request))
    require_media(request, *ACCEPTED_BODIES)
    mapped = map_fields(flat_items(request, body), {}, ctx.config.field_map)
    env = envelope(request, tenant, SOURCES[source])
    env.idempotency_key = env.idempotency_key or request_log.implicit_idempotency_key()
    lead = build_lead(mapped, env, ctx.policy, strict=True)
    # Marketo treats an empty 2xx body as a failure: our answer always has one.
    return stored_answer(await gw.store(lead))

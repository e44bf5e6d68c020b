"""The FastAPI application: one route per source, probes, metrics and the OpenAPI description."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request

from leadflow_core.logs import get_logger
from leadflow_gateway import webhook_schemas as bodies
from leadflow_gateway.backends import Backends
from leadflow_gateway.errors import GatewayError
from leadflow_gateway.ingest import Gateway
from leadflow_gateway.meta_graph import MetaGraphClient
from leadflow_gateway.ratelimit import RateLimiter
from leadflow_gateway.replay import replay_logged_request
from leadflow_gateway.replies import email as email_replies
from leadflow_gateway.replies import sms as sms_replies
from leadflow_gateway.settings import GatewaySettings
from leadflow_gateway.sources import api, calls, form, google, hubspot, meta, salesforce, shared_secret

log = get_logger("leadflow.gateway.app")


class DialOut(BaseModel):
    state: str
    at: str | None
    reasons: list[dict[str, str]]


class Accepted(BaseModel):
    lead_id: str
    duplicate: bool
    # A repeat of the same person and campaign, merged into lead_id: answered 200, duplicate true.
    merged: bool = False
    dial: DialOut


class MetaAnswer(BaseModel):
    leads: list[Accepted]


class CallStatusAnswer(BaseModel):
    applied: bool
    lead_id: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    error: ErrorDetail


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": why}
    for status, why in {
        400: "Malformed: names the field; nothing stored",
        401: "Missing or wrong credentials or signature",
        404: "Unknown tenant, or the source is not enabled",
        413: "Body over the source's size limit",
        415: "Wrong content type",
        429: "Rate limited; see Retry-After",
        503: "A dependency is down; retry after Retry-After",
    }.items()
}
_STORED: dict[int | str, dict[str, Any]] = {
    202: {"model": Accepted, "description": "Stored durably"},
    200: {
        "model": Accepted,
        "description": "Duplicate of a stored lead, or merged into the same person's lead of the "
        "same campaign (merged: true); nothing new is queued",
    },
    **_ERRORS,
}


def build_gateway(settings: GatewaySettings) -> Gateway:
    backends = Backends(
        settings.compliance_addr,
        settings.dispatcher_addr,
        settings.gateway_rpc_timeout_seconds,
        settings.source_cache_seconds,
        settings.retry_after_seconds,
        settings.gateway_batch_max_size,
        settings.gateway_batch_delay_ms / 1000,
        settings.gateway_batch_max_in_flight,
    )
    limiter = RateLimiter(
        aioredis.Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0),
        settings.redis_key("ratelimit") + ":",
        settings.rate_limit_fail_open,
        settings.retry_after_seconds,
    )
    graph = MetaGraphClient(
        settings.meta_graph_url, settings.meta_graph_timeout_seconds, settings.meta_graph_attempts
    )
    return Gateway(settings, backends, limiter, graph)


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = build_gateway(settings)
        try:
            yield
        finally:
            await app.state.gateway.close()

    app = FastAPI(
        title="Leadflow gateway",
        version="1",
        description="Leads in from every source; each answer says whether and when the lead will be dialed.",
        lifespan=lifespan,
    )

    def gw(request: Request) -> Gateway:
        g: Gateway = request.app.state.gateway
        return g

    @app.exception_handler(GatewayError)
    async def _refused(_: Request, err: GatewayError) -> JSONResponse:
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {"loc": ("body",), "msg": "invalid"}
        field = ".".join(str(p) for p in first.get("loc", ("body",)))
        return GatewayError(400, "invalid_argument", str(first.get("msg")), field=field).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        return GatewayError(err.status_code, code, str(err.detail)).response()

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, __: ClientDisconnect) -> JSONResponse:
        return GatewayError(400, "client_disconnected", "the body was not received").response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected_error", error=type(err).__name__)
        return GatewayError(500, "internal", "internal error").response()

    @app.post(
        "/v1/leads",
        status_code=202,
        responses=_STORED,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/ApiLead"},
                        "example": bodies.API_EXAMPLE,
                    }
                },
            },
            "parameters": [
                {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}},
                {"name": "webhook-id", "in": "header", "required": False, "schema": {"type": "string"}},
                {
                    "name": "webhook-timestamp",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                },
                {
                    "name": "webhook-signature",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                },
            ],
            "security": [{"bearer": []}],
        },
        summary="Submit a lead (direct API)",
    )
    async def submit_lead(request: Request) -> Response:
        return await api.handle(gw(request), request)

    @app.get(
        "/v1/leads/{lead_id}/timeline",
        responses={k: v for k, v in _ERRORS.items() if k in (401, 404, 429, 503)},
        openapi_extra={"security": [{"bearer": []}]},
        summary="A lead's timeline (the API key's own tenant only)",
    )
    async def lead_timeline(lead_id: str, request: Request) -> Response:
        return await api.timeline(gw(request), request, lead_id)

    @app.post(
        "/v1/webhooks/{tenant}/form",
        status_code=202,
        responses=_STORED,
        summary="Website form",
        openapi_extra=bodies.body("WebForm", bodies.JSON, bodies.FORM),
    )
    async def form_post(tenant: str, request: Request) -> Response:
        return await form.handle(gw(request), request, tenant)

    @app.options("/v1/webhooks/{tenant}/form", include_in_schema=False)
    async def form_preflight(tenant: str, request: Request) -> Response:
        return await form.preflight(gw(request), request, tenant)

    @app.get(
        "/v1/webhooks/{tenant}/meta",
        response_class=PlainTextResponse,
        summary="Meta handshake",
        openapi_extra={"parameters": bodies.META_HANDSHAKE_PARAMETERS},
    )
    async def meta_get(tenant: str, request: Request) -> Response:
        return await meta.verify_subscription(gw(request), request, tenant)

    @app.post(
        "/v1/webhooks/{tenant}/meta",
        responses={
            200: {"model": MetaAnswer, "description": "Every lead stored (or already stored)"},
            **_ERRORS,
        },
        summary="Meta Lead Ads",
        openapi_extra=bodies.body("MetaNotification"),
    )
    async def meta_post(tenant: str, request: Request) -> Response:
        return await meta.handle(gw(request), request, tenant)

    @app.post(
        "/v1/webhooks/{tenant}/hubspot",
        status_code=202,
        responses=_STORED,
        summary="HubSpot",
        openapi_extra=bodies.hubspot_body(),
    )
    async def hubspot_post(tenant: str, request: Request) -> Response:
        return await hubspot.handle(gw(request), request, tenant)

    @app.post(
        "/v1/webhooks/{tenant}/salesforce",
        responses={
            200: {
                "description": "Every notification stored: the SOAP Ack",
                "content": {"text/xml": {"schema": {"type": "string"}, "example": salesforce.ACK}},
            },
            **_ERRORS,
        },
        summary="Salesforce Outbound Message",
        openapi_extra=bodies.salesforce_body(),
    )
    async def salesforce_post(tenant: str, request: Request) -> Response:
        return await salesforce.handle(gw(request), request, tenant)

    @app.post(
        "/v1/webhooks/{tenant}/salesforce/{path_token}",
        responses={
            200: {
                "description": "Every notification stored: the SOAP Ack",
                "content": {"text/xml": {"schema": {"type": "string"}, "example": salesforce.ACK}},
            },
            **_ERRORS,
        },
        summary="Salesforce Outbound Message, to the path ending in the source's path_token",
        openapi_extra=bodies.salesforce_body(),
    )
    async def salesforce_post_with_token(tenant: str, path_token: str, request: Request) -> Response:
        return await salesforce.handle(gw(request), request, tenant, path_token)

    @app.post(
        "/v1/webhooks/{tenant}/zapier",
        status_code=202,
        responses=_STORED,
        summary="Zapier",
        openapi_extra=bodies.body("MappedFields", bodies.JSON, bodies.FORM),
    )
    async def zapier_post(tenant: str, request: Request) -> Response:
        return await shared_secret.handle(gw(request), request, tenant, "zapier")

    @app.post(
        "/v1/webhooks/{tenant}/marketo",
        status_code=202,
        responses=_STORED,
        summary="Marketo",
        openapi_extra=bodies.body("MappedFields", bodies.JSON, bodies.FORM),
    )
    async def marketo_post(tenant: str, request: Request) -> Response:
        return await shared_secret.handle(gw(request), request, tenant, "marketo")

    @app.post(
        "/v1/webhooks/{tenant}/google",
        status_code=200,
        responses={
            200: {"description": "Stored (or already stored): an empty body, as Google documents"},
            **_ERRORS,
        },
        summary="Google Ads lead form",
        response_class=Response,
        openapi_extra=bodies.body("GoogleLeadForm"),
    )
    async def google_post(tenant: str, request: Request) -> Response:
        return await google.handle(gw(request), request, tenant)

    @app.post(
        "/v1/calls/{tenant}/status",
        responses={
            200: {"model": CallStatusAnswer, "description": "Recorded (or already recorded)"},
            **_ERRORS,
        },
        summary="Twilio call status callback",
        openapi_extra=bodies.body("TwilioStatusCallback", bodies.FORM),
    )
    async def call_status(tenant: str, request: Request) -> Response:
        return await calls.handle(gw(request), request, tenant)

    @app.post(
        "/v1/replies/{tenant}/sms",
        response_class=Response,
        responses={
            200: {
                "description": "TwiML; a <Message> carries the one confirmation text",
                "content": {"application/xml": {}},
            },
            **_ERRORS,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["MessageSid", "From", "Body"],
                            "properties": {
                                "MessageSid": {"type": "string"},
                                "From": {"type": "string", "description": "the person's number"},
                                "To": {"type": "string"},
                                "Body": {"type": "string"},
                            },
                        },
                        "example": {
                            "MessageSid": "SM123",
                            "From": "+12125550123",
                            "To": "+12125550000",
                            "Body": "STOP",
                        },
                    }
                },
            },
            "parameters": [
                {
                    "name": "X-Twilio-Signature",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                },
                {"name": "campaign", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
        },
        summary="Incoming text (Twilio Messaging webhook): opt-out replies revoke consent",
    )
    async def sms_reply(tenant: str, request: Request) -> Response:
        return await sms_replies.handle(gw(request), request, tenant)

    @app.post(
        "/v1/replies/{tenant}/email",
        responses={200: {"description": "Recorded; says whether it revoked"}, **_ERRORS},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/EmailReply"},
                        "example": {
                            "from": "Pat <pat@example.com>",
                            "subject": "Re: your quote",
                            "text": "Unsubscribe\n\nOn Mon, ACME <news@acme.example> wrote:\n> ...",
                            "message_id": "<abc@mail.example.com>",
                        },
                    }
                },
            },
            "parameters": [
                {"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
                for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
            ],
        },
        summary="Email reply (Standard Webhooks signed): an unsubscribe revokes consent",
    )
    async def email_reply(tenant: str, request: Request) -> Response:
        return await email_replies.handle(gw(request), request, tenant)

    @app.post("/v1/replays", include_in_schema=False)
    async def replay(request: Request) -> Response:
        # The dispatcher's AdminService.ReplayRequests, for an operator: see leadflow_gateway.replay.
        return await replay_logged_request(gw(request), request)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        deps = await gw(request).backends.ready()
        ok = all(deps.values())
        return JSONResponse({"ready": ok, "dependencies": deps}, status_code=200 if ok else 503)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {})
            lead_schema = api.ApiLead.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = components.setdefault("schemas", {})
            schemas.update(lead_schema.pop("$defs", {}))
            schemas["ApiLead"] = lead_schema
            schemas["EmailReply"] = email_replies.EmailReply.model_json_schema(by_alias=True)
            schemas.update(bodies.component_schemas())
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    from leadflow_gateway.middleware import RequestContextMiddleware

    app.add_middleware(RequestContextMiddleware)
    return app

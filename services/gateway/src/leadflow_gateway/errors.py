"""Refusals as one exception type, rendered as `{"error": {"code", "message", "field"?}}`."""

from __future__ import annotations

from fastapi.responses import JSONResponse, ORJSONResponse


class GatewayError(Exception):
    """A request the gateway refuses; nothing was stored for it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body: dict[str, str] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return ORJSONResponse({"error": body}, status_code=self.status, headers=self.headers)


def bad_request(field: str, message: str) -> GatewayError:
    return GatewayError(400, "invalid_argument", message, field=field)


def unauthenticated(message: str) -> GatewayError:
    return GatewayError(401, "unauthenticated", message)


def forbidden(message: str) -> GatewayError:
    return GatewayError(403, "permission_denied", message)


def not_found(message: str) -> GatewayError:
    return GatewayError(404, "not_found", message)


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, "payload_too_large", f"body exceeds {limit} bytes")


def unsupported_media(expected: str) -> GatewayError:
    return GatewayError(415, "unsupported_media_type", f"content type must be {expected}")


def rate_limited(retry_after: int, scope: str) -> GatewayError:
    return GatewayError(
        429, "rate_limited", f"too many requests ({scope})", headers={"Retry-After": str(max(1, retry_after))}
    )


def unavailable(message: str, retry_after: int) -> GatewayError:
    return GatewayError(503, "unavailable", message, headers={"Retry-After": str(max(1, retry_after))})

"""Reading a request body within a size limit, and parsing JSON or form-urlencoded bodies."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from leadflow_gateway.ascii_text import is_digits
from leadflow_gateway.errors import bad_request, too_large, unsupported_media

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def require_media(request: Request, *allowed: str) -> str:
    mt = media_type(request)
    # Vendors send "application/json" or a +json / text/xml variant; anything else is refused.
    if mt in allowed or (JSON in allowed and mt.endswith("+json")):
        return mt
    raise unsupported_media(" or ".join(allowed))


async def read_body(request: Request, limit: int) -> bytes:
    """The raw bytes as received (signatures are over these), refusing more than `limit`."""
    declared = request.headers.get("content-length", "")
    if is_digits(declared) and (len(declared) > 15 or int(declared) > limit):
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise bad_request("body", "body is not UTF-8") from err
    except (json.JSONDecodeError, RecursionError) as err:
        raise bad_request("body", f"body is not valid JSON ({err.__class__.__name__})") from err
    # Only a body with a \u escape can hold one (raw UTF-8 cannot encode a surrogate).
    if b"\\u" in body and not _encodable(doc):
        raise bad_request("body", "body has an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)")
    return doc


def _encodable(doc: Any) -> bool:
    """JSON's `\\ud800` escapes decode to lone surrogates, which no UTF-8 text (nor protobuf) can hold."""
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def parse_json_object(body: bytes) -> dict[str, Any]:
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise bad_request("body", "body must be a JSON object")
    return doc


def parse_form(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise bad_request("body", "body is not UTF-8") from err
    try:
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=500)
    except ValueError as err:
        raise bad_request("body", "too many form fields") from err

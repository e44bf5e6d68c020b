"""Every sender's signature scheme, as pure functions; all comparisons are constant-time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping

from leadflow_gateway.ascii_text import is_digits

# HubSpot v3 signs the URI with these escapes decoded (HubSpot's validation docs).
_HUBSPOT_DECODE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


def _eq(a: str | bytes, b: str | bytes) -> bool:
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)


def meta_signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_meta(app_secret: str, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256` over the raw bytes as received."""
    if not header or not app_secret:
        return False
    return _eq(meta_signature(app_secret, body), header.strip().lower())


def hubspot_uri(uri: str) -> str:
    for enc, dec in _HUBSPOT_DECODE.items():
        uri = uri.replace(enc, dec).replace(enc.lower(), dec)
    return uri


def hubspot_v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.upper().encode() + hubspot_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def verify_hubspot_v3(
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    timestamp: str | None,
    header: str | None,
    now_ms: int,
    tolerance_ms: int,
) -> bool:
    """v3: base64 HMAC-SHA256 of method + URI + body + timestamp, timestamp in ms within the window."""
    if not header or not timestamp or not secret or not is_digits(timestamp) or len(timestamp) > 16:
        return False
    if abs(now_ms - int(timestamp)) > tolerance_ms:
        return False
    return _eq(hubspot_v3_signature(secret, method, uri, body, timestamp), header.strip())


def hubspot_v1_signature(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


def hubspot_v2_signature(secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + method.upper().encode() + uri.encode() + body).hexdigest()


def verify_hubspot_legacy(
    secret: str, version: str, method: str, uri: str, body: bytes, header: str | None
) -> bool:
    if not header or not secret:
        return False
    if version == "v1":
        expected = hubspot_v1_signature(secret, body)
    elif version == "v2":
        expected = hubspot_v2_signature(secret, method, uri, body)
    else:
        return False
    return _eq(expected, header.strip().lower())


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    data = url + "".join(k + v for k, v in sorted(params, key=lambda kv: (kv[0], kv[1])))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def verify_twilio(auth_token: str, url: str, params: Iterable[tuple[str, str]], header: str | None) -> bool:
    """`X-Twilio-Signature`: HMAC-SHA1 over the full URL and the POST parameters sorted by name."""
    if not header or not auth_token:
        return False
    return _eq(twilio_signature(auth_token, url, params), header.strip())


def _whsec_key(secret: str) -> bytes | None:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None


def standard_webhook_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = _whsec_key(secret)
    if key is None:
        raise ValueError("a Standard Webhooks secret is whsec_<base64>")
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify_standard_webhook(
    secrets: Iterable[str],
    headers: Mapping[str, str],
    body: bytes,
    now_s: int,
    tolerance_s: int,
) -> bool:
    """`webhook-id`/`webhook-timestamp`/`webhook-signature`; any listed signature with any key
    (old and new during a rotation) is enough."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    given = headers.get("webhook-signature", "")
    if not msg_id or not is_digits(timestamp) or len(timestamp) > 12 or not given:
        return False
    if abs(now_s - int(timestamp)) > tolerance_s:
        return False
    candidates = [s for s in given.split(" ") if s.startswith("v1,")]
    ok = False
    for secret in secrets:
        if _whsec_key(secret) is None:
            continue
        expected = standard_webhook_signature(secret, msg_id, timestamp, body)
        for candidate in candidates:
            # No early exit: every pair is compared, so timing does not tell which key matched.
            ok |= _eq(expected, candidate)
    return ok


def shared_secret_matches(expected: str, given: str | None) -> bool:
    return bool(expected) and given is not None and _eq(expected, given.strip())

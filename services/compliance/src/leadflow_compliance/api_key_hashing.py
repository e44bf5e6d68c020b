"""API keys: their format, how a presented key finds its row, and the scrypt hash kept at rest.

A key reads `lf_<key id>_<secret>`: the key id (16 hex digits) finds the row by primary key, so
checking a key costs one indexed read and one scrypt, never a scan. Keys issued before named keys
read `lf_<secret>`; their rows were found by SHA-256, so migration 0004 stored the first 24 hex
digits of that digest as their lookup and an scrypt over the full digest as their hash.

Only the key id and the lookup are stored in clear; neither opens anything."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Final

KEY_PREFIX: Final = "lf_"
SCOPES: Final = ("ingest", "read")
# Keys made without scopes, and every key issued before scopes existed, may do everything.
DEFAULT_SCOPES: Final = SCOPES
# 16 MiB and ~40 ms per hash: slow for an attacker holding the table, paid once per key per cache
# period by compliance (api_key_registry caches verified keys).
_N, _R, _P = 2**14, 8, 1
_SCHEME: Final = "scrypt"
# The secret hashed is SHA-256(key): rows migrated from the SHA-256 digests stored before.
_LEGACY_SCHEME: Final = "scrypt-sha256"
_LEGACY_LOOKUP_DIGITS: Final = 24
_NEW_FORMAT = re.compile(r"lf_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")


def new_key() -> tuple[str, str]:
    """(key id, key)."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def display_prefix(key_id: str) -> str:
    """What listings show of a key: enough to tell which one a client holds, nothing to use."""
    return f"{KEY_PREFIX}{key_id}"


def key_id_of(key: str) -> str | None:
    """The key id a key names, or None for a key in the format from before named keys."""
    match = _NEW_FORMAT.fullmatch(key)
    return match.group(1) if match else None


def legacy_lookup(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:_LEGACY_LOOKUP_DIGITS]


def legacy_lookup_of_digest(sha256_hex: str) -> str:
    return "sha256:" + sha256_hex[:_LEGACY_LOOKUP_DIGITS]


def _scrypt(secret: bytes, salt: bytes) -> bytes:
    return hashlib.scrypt(secret, salt=salt, n=_N, r=_R, p=_P, dklen=32)


def _encode(scheme: str, salt: bytes, digest: bytes) -> str:
    b64 = base64.urlsafe_b64encode
    return f"{scheme}${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def hash_key(key: str) -> str:
    salt = secrets.token_bytes(16)
    return _encode(_SCHEME, salt, _scrypt(key.encode(), salt))


def hash_legacy_digest(sha256_hex: str) -> str:
    """The stored hash of a key known only by its old SHA-256 digest (migration 0004)."""
    salt = secrets.token_bytes(16)
    return _encode(_LEGACY_SCHEME, salt, _scrypt(bytes.fromhex(sha256_hex), salt))


def verify(key: str, stored: str) -> bool:
    """Whether `key` is the key `stored` was made from; constant time in the comparison."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        salt = base64.urlsafe_b64decode(salt_b64)
        want = base64.urlsafe_b64decode(digest_b64)
        params = int(n), int(r), int(p)
    except ValueError:
        return False
    if scheme == _SCHEME:
        secret = key.encode()
    elif scheme == _LEGACY_SCHEME:
        secret = hashlib.sha256(key.encode()).digest()
    else:
        return False
    got = hashlib.scrypt(secret, salt=salt, n=params[0], r=params[1], p=params[2], dklen=len(want))
    return hmac.compare_digest(got, want)


def normalise_scopes(scopes: list[str]) -> tuple[str, ...] | None:
    """The scopes in canonical order (none given: all), or None when one is unknown."""
    if not scopes:
        return DEFAULT_SCOPES
    if any(s not in SCOPES for s in scopes):
        return None
    return tuple(s for s in SCOPES if s in scopes)

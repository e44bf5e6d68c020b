"""Envelope encryption of secrets at rest (AES-256-GCM, `cryptography`).

Each value gets its own data key; the data key is wrapped by a key-encryption key (KEK) named
by a key id, and the id travels with the value:

    lf1:<kid>:<fingerprint>:<wrapped data key>:<nonce>:<ciphertext>      (base64url parts)

KEKs are 32 random bytes, base64, one per file: `LEADFLOW_KEK_FILE` (one key, its id the file's
stem) or `LEADFLOW_KEYRING_DIR` (default `var/keyring`; `<kid>.key` files, the primary being
`LEADFLOW_KEK_PRIMARY` or else the greatest id). New values are sealed under the primary; any
key still in the ring opens old ones, so rotation is: add a key, make it primary, re-seal every
value (`leadflow secrets rotate`), then remove the old key file — values under it stop opening.
The ring is re-read when its files change, so none of this needs a restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "lf1"
KID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class KeyringError(RuntimeError):
    """A sealed value cannot be opened (unknown key, tampered value) or no key is configured."""


class KeyringSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_", extra="ignore")

    kek_file: str = ""
    keyring_dir: str = "var/keyring"
    kek_primary: str = ""
    # Creates a first key in an empty keyring dir (development, tests); production mounts keys.
    keyring_autocreate: bool = True


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii") + "\n"


def add_key(directory: Path, kid: str) -> Path:
    """Write a new random KEK `<kid>.key` (readable by the owner only)."""
    if not KID_RE.match(kid):
        raise ValueError(f"key id {kid!r}: letters, digits, '.', '_' or '-' only")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{kid}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new_key_text())
    return path


def _read_key(path: Path) -> bytes:
    key = base64.b64decode(path.read_text().strip(), validate=True)
    if len(key) != 32:
        raise KeyringError(f"{path.name}: a key must be 32 bytes (base64)")
    return key


@dataclass(frozen=True)
class Sealed:
    kid: str
    fingerprint: str
    wrapped: bytes
    nonce: bytes
    ciphertext: bytes

    @classmethod
    def parse(cls, text: str) -> Sealed:
        parts = text.split(":")
        if len(parts) != 6 or parts[0] != PREFIX:
            raise KeyringError("not a sealed value")
        return cls(parts[1], parts[2], _unb64(parts[3]), _unb64(parts[4]), _unb64(parts[5]))

    def text(self) -> str:
        return ":".join(
            (PREFIX, self.kid, self.fingerprint, _b64(self.wrapped), _b64(self.nonce), _b64(self.ciphertext))
        )


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX + ":")


class Keyring:
    def __init__(self, keys: dict[str, bytes], primary: str, fingerprint_key: bytes) -> None:
        if primary not in keys:
            raise KeyringError(f"primary key {primary!r} is not in the keyring")
        self.keys = keys
        self.primary = primary
        self._fp_key = fingerprint_key

    def fingerprint(self, plaintext: str) -> str:
        """Identifies a value without revealing it (keyed, so it cannot be brute-forced offline)."""
        return hmac.new(self._fp_key, plaintext.encode(), hashlib.sha256).hexdigest()[:16]

    def seal(self, plaintext: str, context: str) -> str:
        """Encrypt under the primary key; `context` (e.g. tenant/section/name) binds it in place."""
        kek = self.keys[self.primary]
        dek = AESGCM.generate_key(bit_length=256)
        wrap_nonce = secrets.token_bytes(12)
        wrapped = wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, dek, self.primary.encode())
        nonce = secrets.token_bytes(12)
        ciphertext = AESGCM(dek).encrypt(nonce, plaintext.encode(), context.encode())
        return Sealed(self.primary, self.fingerprint(plaintext), wrapped, nonce, ciphertext).text()

    def open(self, sealed_text: str, context: str) -> str:
        sealed = Sealed.parse(sealed_text)
        kek = self.keys.get(sealed.kid)
        if kek is None:
            raise KeyringError(f"key {sealed.kid!r} is not in the keyring (removed after rotation?)")
        try:
            dek = AESGCM(kek).decrypt(sealed.wrapped[:12], sealed.wrapped[12:], sealed.kid.encode())
            return AESGCM(dek).decrypt(sealed.nonce, sealed.ciphertext, context.encode()).decode()
        except InvalidTag as err:
            raise KeyringError("sealed value does not open (wrong key or altered)") from err


_lock = threading.Lock()
_cached: tuple[tuple[object, ...], Keyring] | None = None


def _stamp(paths: list[Path]) -> tuple[object, ...]:
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)


def load(fingerprint_key: str, settings: KeyringSettings | None = None) -> Keyring:
    """The current keyring, re-read whenever a key file is added, changed or removed."""
    global _cached
    settings = settings or KeyringSettings()
    if settings.kek_file:
        paths = [Path(settings.kek_file)]
    else:
        directory = Path(settings.keyring_dir)
        paths = sorted(directory.glob("*.key")) if directory.is_dir() else []
        if not paths and settings.keyring_autocreate:
            with _lock:
                paths = sorted(directory.glob("*.key")) if directory.is_dir() else []
                if not paths:
                    paths = [add_key(directory, "k1")]
        if not paths:
            raise KeyringError(f"no key-encryption key: set LEADFLOW_KEK_FILE or put keys in {directory}")
    stamp = (fingerprint_key, settings.kek_primary, _stamp(paths))
    with _lock:
        if _cached is not None and _cached[0] == stamp:
            return _cached[1]
        keys = {p.stem: _read_key(p) for p in paths}
        primary = settings.kek_primary or max(keys)
        ring = Keyring(
            keys, primary, hashlib.sha256(b"leadflow-fingerprint:" + fingerprint_key.encode()).digest()
        )
        _cached = (stamp, ring)
        return ring

"""Tenant secrets in `compliance_tenants.spec`: sealed on write, opened only for the internal
config RPCs, shown elsewhere as names and fingerprints (see `leadflow_core.keyring`)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from leadflow.v1 import tenant_pb2
from leadflow_core.keyring import Keyring, Sealed, is_sealed

# Spec sections holding a map of name -> SourceConfig, each with a `secrets` map.
SECTIONS = ("sources", "provider_configs")


def _context(tenant: str, section: str, config: str, name: str) -> str:
    # Bound into the ciphertext: a value copied to another tenant or field does not open.
    return f"{tenant}/{section}/{config}/{name}"


def _secret_maps(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, str]]]:
    for section in SECTIONS:
        for config_name, config in (spec.get(section) or {}).items():
            secrets = config.get("secrets") if isinstance(config, dict) else None
            if isinstance(secrets, dict):
                yield section, config_name, secrets


def seal_spec(
    tenant: str, spec: dict[str, Any], stored: dict[str, Any] | None, ring: Keyring
) -> dict[str, Any]:
    """A copy of `spec` with every secret sealed. A value equal to the stored one keeps its stored
    sealing, so re-applying the same tenant changes nothing (no new revision)."""
    out = copy.deepcopy(spec)
    previous: dict[tuple[str, str, str], str] = {}
    for section, config_name, secrets in _secret_maps(stored or {}):
        for name, value in secrets.items():
            previous[(section, config_name, name)] = value
    for section, config_name, secrets in _secret_maps(out):
        for name, value in list(secrets.items()):
            if is_sealed(value):
                continue  # already sealed (never accepted from callers: see `unsealed_input`)
            old = previous.get((section, config_name, name))
            if old and is_sealed(old):
                sealed = Sealed.parse(old)
                if sealed.fingerprint == ring.fingerprint(value) and sealed.kid in ring.keys:
                    secrets[name] = old
                    continue
            secrets[name] = ring.seal(value, _context(tenant, section, config_name, name))
    return out


def sealed_input(spec: dict[str, Any]) -> str | None:
    """The first secret a caller sent already in sealed form (refused: it could be a copy of
    another tenant's sealed value)."""
    for section, config_name, secrets in _secret_maps(spec):
        for name, value in secrets.items():
            if is_sealed(value):
                return f"tenant.{section}[{config_name}].secrets[{name}]"
    return None


def open_config(
    tenant: str, section: str, config_name: str, config: tenant_pb2.SourceConfig, ring: Keyring
) -> None:
    """Replace sealed values in `config` by their plaintext (internal config RPCs only)."""
    for name, value in list(config.secrets.items()):
        if is_sealed(value):
            config.secrets[name] = ring.open(value, _context(tenant, section, config_name, name))


def redact(config: tenant_pb2.SourceConfig) -> None:
    """Secrets are write-only: reads show their names and fingerprints, never their values."""
    fingerprints = {n: Sealed.parse(v).fingerprint for n, v in config.secrets.items() if is_sealed(v)}
    names = sorted(set(config.secrets) | set(config.secret_names))
    config.secrets.clear()
    del config.secret_names[:]
    config.secret_names.extend(names)
    config.secret_fingerprints.clear()
    config.secret_fingerprints.update(fingerprints)


def reseal_spec(tenant: str, spec: dict[str, Any], *, ring: Keyring) -> tuple[dict[str, Any], int]:
    """Every secret opened and sealed again under the primary key; returns (spec, values moved)."""
    out = copy.deepcopy(spec)
    moved = 0
    for section, config_name, secrets in _secret_maps(out):
        for name, value in list(secrets.items()):
            context = _context(tenant, section, config_name, name)
            plaintext = ring.open(value, context) if is_sealed(value) else value
            if is_sealed(value) and Sealed.parse(value).kid == ring.primary:
                continue
            secrets[name] = ring.seal(plaintext, context)
            moved += 1
    return out, moved


def key_ids(spec: dict[str, Any]) -> set[str]:
    """Key ids the sealed values of `spec` depend on ("" for a value not sealed at all)."""
    return {
        Sealed.parse(v).kid if is_sealed(v) else ""
        for _, _, secrets in _secret_maps(spec)
        for v in secrets.values()
    }

"""Reading Tenant and Secret manifests (the same YAML `kubectl apply` takes)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from leadflow.v1 import tenant_pb2
from leadflow_core.tenant_spec import (
    SecretRef,
    TenantSpec,
    event_endpoint_kind,
    resolve_secret_ref,
    to_proto,
    validate_name,
)

TENANT_API_VERSION = "leadflow.dev/v1alpha1"


@dataclass(frozen=True)
class TenantManifest:
    name: str
    spec: TenantSpec


def load_documents(paths: list[Path]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ValueError(f"{path}: every YAML document must be a mapping")
            docs.append(doc)
    return docs


def secret_data(doc: dict[str, Any]) -> dict[str, str]:
    """A v1 Secret's values: `stringData` as is, `data` base64-decoded."""
    values = {k: str(v) for k, v in (doc.get("stringData") or {}).items()}
    for k, v in (doc.get("data") or {}).items():
        values.setdefault(k, base64.b64decode(str(v)).decode())
    return values


def parse_tenants(docs: list[dict[str, Any]]) -> tuple[list[TenantManifest], dict[str, dict[str, str]]]:
    tenants: list[TenantManifest] = []
    secrets: dict[str, dict[str, str]] = {}
    for doc in docs:
        kind = doc.get("kind")
        name = str((doc.get("metadata") or {}).get("name", ""))
        if kind == "Secret":
            secrets[name] = secret_data(doc)
        elif kind == "Tenant":
            if doc.get("apiVersion") != TENANT_API_VERSION:
                raise ValueError(f"Tenant {name!r}: apiVersion must be {TENANT_API_VERSION}")
            validate_name(name)
            try:
                spec = TenantSpec.model_validate(doc.get("spec") or {})
            except ValidationError as err:
                raise ValueError(f"Tenant {name!r}: invalid spec:\n{err}") from err
            tenants.append(TenantManifest(name=name, spec=spec))
        else:
            raise ValueError(f"unsupported kind {kind!r} (expected Tenant or Secret)")
    return tenants, secrets


def _resolve(ref: SecretRef | None, secrets: dict[str, dict[str, str]], where: str) -> dict[str, str]:
    if ref is None:
        return {}
    if ref.name not in secrets:
        raise ValueError(f"{where}: secretRef names Secret {ref.name!r}; pass its manifest with -f")
    return resolve_secret_ref(ref, secrets[ref.name])


def build_tenant(manifest: TenantManifest, secrets: dict[str, dict[str, str]]) -> tenant_pb2.Tenant:
    resolved: dict[str, dict[str, str]] = {}
    for source_name, source in manifest.spec.sources.items():
        resolved[source_name] = _resolve(source.secret_ref, secrets, f"sources.{source_name}")
    for kind, provider in manifest.spec.providers.items():
        resolved[f"provider:{kind}"] = _resolve(provider.secret_ref, secrets, f"providers.{kind}")
    for name, endpoint in manifest.spec.event_endpoints.items():
        resolved[f"provider:{event_endpoint_kind(name)}"] = _resolve(
            endpoint.secret_ref, secrets, f"eventEndpoints.{name}"
        )
    return to_proto(manifest.name, manifest.spec, resolved)

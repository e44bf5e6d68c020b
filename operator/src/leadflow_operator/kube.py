"""The few API calls the operator makes outside kopf, with the credentials kopf logged in with:
reading the Secrets Tenants name, creating a Tenant's API-key Secret, and patching a Tenant's
status when one of its Secrets changed (kopf has no public API client)."""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf

from leadflow_operator.resource import GROUP, PLURAL, VERSION


class KubeUnavailable(RuntimeError):
    """The API server did not answer as expected (retry later)."""


@dataclass
class KubeAccess:
    info: kopf.ConnectionInfo | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def _ssl(self, info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
        if not info.server.startswith("https"):
            return False
        if info.insecure:
            return False
        ctx = ssl.create_default_context(
            cafile=os.fspath(info.ca_path) if info.ca_path else None,
            cadata=_text(info.ca_data) if info.ca_data else None,
        )
        cert = info.certificate_path or (
            self._file("cert.pem", info.certificate_data) if info.certificate_data else None
        )
        key = info.private_key_path or (
            self._file("key.pem", info.private_key_data) if info.private_key_data else None
        )
        if cert:
            ctx.load_cert_chain(os.fspath(cert), os.fspath(key) if key else None)
        return ctx

    def _file(self, name: str, data: str | bytes) -> str:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="leadflow-operator-")
        path = Path(self._tmp.name) / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        path.chmod(0o600)
        return str(path)

    async def _request(
        self, method: str, path: str, what: str, body: dict[str, Any] | None = None, content_type: str = ""
    ) -> tuple[int, dict[str, Any]]:
        info = self.info
        if info is None:
            raise KubeUnavailable("not logged in to the Kubernetes API yet")
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        auth = None
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        elif info.username and info.password:
            auth = aiohttp.BasicAuth(info.username, info.password)
        url = f"{info.server.rstrip('/')}{path}"
        timeout = aiohttp.ClientTimeout(total=15)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, trust_env=info.trust_env) as session,
                session.request(
                    method, url, headers=headers, auth=auth, ssl=self._ssl(info), json=body
                ) as resp,
            ):
                answer: dict[str, Any] = await resp.json(content_type=None) if resp.status != 204 else {}
                return resp.status, answer or {}
        except (aiohttp.ClientError, ValueError) as err:
            # Never the body: it may hold secret values.
            raise KubeUnavailable(f"{what}: {type(err).__name__}") from None

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's `.data` (base64 values), or None when it does not exist."""
        path = f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
        status, body = await self._request("GET", path, f"reading Secret {name!r}")
        if status == 404:
            return None
        if status != 200:
            raise KubeUnavailable(f"reading Secret {name!r}: HTTP {status}")
        data = body.get("data") or {}
        return {str(k): str(v) for k, v in data.items()}

    async def create_secret(
        self, namespace: str, name: str, string_data: dict[str, str], owner: dict[str, Any] | None = None
    ) -> bool:
        """Create an Opaque Secret; False when one of that name exists already (kept as it is)."""
        meta: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "leadflow-operator"},
        }
        if owner is not None:
            meta["ownerReferences"] = [owner]
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta,
            "type": "Opaque",
            "stringData": string_data,
        }
        path = f"/api/v1/namespaces/{quote(namespace)}/secrets"
        status, _ = await self._request("POST", path, f"creating Secret {name!r}", body, "application/json")
        if status == 409:
            return False
        if status not in (200, 201):
            raise KubeUnavailable(f"creating Secret {name!r}: HTTP {status}")
        return True

    async def patch_tenant_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch a Tenant's status (outside a kopf handler: the Secret watch)."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}/status"
        code, _ = await self._request(
            "PATCH", path, f"patching Tenant {name!r}", {"status": status}, "application/merge-patch+json"
        )
        if code not in (200, 201, 404):
            raise KubeUnavailable(f"patching Tenant {name!r} status: HTTP {code}")


def _text(data: str | bytes) -> str:
    return data.decode() if isinstance(data, bytes) else data

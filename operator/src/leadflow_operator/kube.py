"""Reading the Secrets that Tenants name, with the credentials kopf logged in with.

kopf has no public API client; this is the one read the operator makes outside kopf.
"""

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

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's `.data` (base64 values), or None when it does not exist."""
        info = self.info
        if info is None:
            raise KubeUnavailable("not logged in to the Kubernetes API yet")
        headers = {"Accept": "application/json"}
        auth = None
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        elif info.username and info.password:
            auth = aiohttp.BasicAuth(info.username, info.password)
        url = f"{info.server.rstrip('/')}/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
        timeout = aiohttp.ClientTimeout(total=15)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, trust_env=info.trust_env) as session,
                session.get(url, headers=headers, auth=auth, ssl=self._ssl(info)) as resp,
            ):
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise KubeUnavailable(f"reading Secret {name!r}: HTTP {resp.status}")
                body: dict[str, Any] = await resp.json()
        except aiohttp.ClientError as err:
            raise KubeUnavailable(f"reading Secret {name!r}: {type(err).__name__}") from None
        data = body.get("data") or {}
        return {str(k): str(v) for k, v in data.items()}


def _text(data: str | bytes) -> str:
    return data.decode() if isinstance(data, bytes) else data

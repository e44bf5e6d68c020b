"""kmock's Kubernetes emulator served from a thread, driven over HTTP the way kubectl drives an
API server, so the operator under test (kopf in KopfRunner's thread) and the test never share
an event loop."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import urllib.error
import urllib.request
from types import TracebackType
from typing import Any

import aiohttp.web
import kmock

TENANTS = "/apis/leadflow.dev/v1alpha1/namespaces/{ns}/tenants"


class ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator plus the bits of API-server bookkeeping kopf relies on: names from
    `generateName` (kopf's Events), uid, resourceVersion, and `generation` bumped on spec changes."""

    _serial = itertools.count(1)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        data = request.data
        if request.resource is not None and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if request.action == kmock.action.CREATE:
                n = next(self._serial)
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = f"{meta['generateName']}{n:05d}"
                meta.setdefault("uid", f"uid-{n}")
                meta.setdefault("resourceVersion", "1")
                meta.setdefault("generation", 1)
            elif request.action == kmock.action.UPDATE and request.subresource is None and "spec" in data:
                key = (request.resource, request.namespace, request.name or "")
                if key in self.objects:
                    current = self.objects[key]
                    if current.get("spec") != {**(current.get("spec") or {}), **data["spec"]}:
                        meta["generation"] = int(current.get("metadata", {}).get("generation", 1)) + 1
        return await super()._handle(request)


class KubeEmulator:
    def __init__(self) -> None:
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kmock", daemon=True)

    def __enter__(self) -> KubeEmulator:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("kmock did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as err:
            self._error = err
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with ApiServer() as emulator, kmock.Server(emulator) as server:
            info = kmock.ResourceInfo
            emulator.resources["leadflow.dev/v1alpha1/tenants"] = info(
                kind="Tenant",
                singular="tenant",
                namespaced=True,
                shortnames={"lft"},
                verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
                subresources={"status"},
            )
            # kopf waits for namespaces to exist in discovery; secrets and events are what it reads and posts.
            emulator.resources["v1/namespaces"] = info(
                kind="Namespace", namespaced=False, verbs={"list", "watch"}
            )
            emulator.resources["v1/secrets"] = info(
                kind="Secret", namespaced=True, verbs={"get", "create", "list", "watch", "patch"}
            )
            emulator.resources["v1/events"] = info(kind="Event", namespaced=True, verbs={"create", "list"})
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    # --- kubectl, over HTTP -------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310 (http, loopback)
        req.add_header("Content-Type", content_type)
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (http, loopback)
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def create_secret(self, ns: str, name: str, data_b64: dict[str, str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "data": data_b64,
        }
        self.request("POST", f"/api/v1/namespaces/{ns}/secrets", body)

    def replace_secret(self, ns: str, name: str, data_b64: dict[str, str]) -> None:
        # A merge patch of `data` swaps the keys given (kubectl edit / apply do the same).
        self.request(
            "PATCH",
            f"/api/v1/namespaces/{ns}/secrets/{name}",
            {"data": data_b64},
            "application/merge-patch+json",
        )

    def create_tenant(self, ns: str, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": "leadflow.dev/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
        self.request("POST", TENANTS.format(ns=ns), body)

    def patch_tenant_spec(self, ns: str, name: str, spec: dict[str, Any]) -> None:
        self.request(
            "PATCH", f"{TENANTS.format(ns=ns)}/{name}", {"spec": spec}, "application/merge-patch+json"
        )

    def delete_tenant(self, ns: str, name: str) -> None:
        self.request("DELETE", f"{TENANTS.format(ns=ns)}/{name}")

    def tenant(self, ns: str, name: str) -> dict[str, Any] | None:
        obj: dict[str, Any] | None = self.request("GET", f"{TENANTS.format(ns=ns)}/{name}")
        return obj

    def events(self, ns: str) -> list[dict[str, Any]]:
        listing = self.request("GET", f"/api/v1/namespaces/{ns}/events")
        items: list[dict[str, Any]] = (listing or {}).get("items", [])
        return items

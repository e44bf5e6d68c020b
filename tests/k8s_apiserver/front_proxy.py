"""The small front the standalone apiextensions-apiserver needs to pass for a cluster.

Two HTTP listeners in one process (aiohttp, loopback only):

- the *front* (for kubectl and the operator): `/api` and `/api/v1` discovery, namespaces,
  Secrets and Events held in memory (list, watch, create, patch, delete), a generated `/apis`
  group list and `/openapi/v3` (the standalone server serves neither), a corrected `/version`,
  and everything else under `/apis/...` passed through to the real API server with a
  `system:masters` client certificate;
- the *core stand-in* (for the API server itself, named by its authentication, authorization and
  core kubeconfigs): TokenReview and SubjectAccessReview answered allowed, and the informers it
  starts on core resources served from the same memory, with the WatchList BOOKMARK
  (`k8s.io/initial-events-end`) they wait for.

    python -m tests.k8s_apiserver.front_proxy --upstream https://127.0.0.1:PORT \
        --cert client.pem --key client-key.pem --version v1.36.4 --ports-file ports.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import hashlib
import json
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

Obj = dict[str, Any]

# Core resources held in memory: plural -> (kind, namespaced).
CORE: dict[str, tuple[str, bool]] = {
    "namespaces": ("Namespace", False),
    "secrets": ("Secret", True),
    "events": ("Event", True),
    "configmaps": ("ConfigMap", True),
}
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> web.Response:
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    body |= {"message": message, "reason": reason, "code": code}
    return web.json_response(body, status=code)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (strategic merge patches of our few kinds reduce to it)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


@dataclass
class Watcher:
    plural: str
    namespace: str | None
    queue: asyncio.Queue[Obj] = field(default_factory=asyncio.Queue)


@dataclass
class Store:
    """Core objects in memory with a resourceVersion counter and an event log for watches."""

    items: dict[str, dict[tuple[str, str], Obj]] = field(default_factory=lambda: {p: {} for p in CORE})
    log: list[tuple[int, str, Obj]] = field(default_factory=list)
    rv: int = 1
    watchers: list[Watcher] = field(default_factory=list)

    def _emit(self, plural: str, type_: str, obj: Obj) -> None:
        self.log.append((int(obj["metadata"]["resourceVersion"]), plural, {"type": type_, "object": obj}))
        ns = obj["metadata"].get("namespace")
        for w in self.watchers:
            if w.plural == plural and (w.namespace is None or w.namespace == ns):
                w.queue.put_nowait({"type": type_, "object": obj})

    def _bump(self, obj: Obj) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def normalise(self, plural: str, obj: Obj, namespace: str | None) -> Obj:
        kind, namespaced = CORE[plural]
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = "v1", kind
        meta = obj.setdefault("metadata", {})
        if namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if plural == "secrets":
            data = dict(obj.get("data") or {})
            for key, value in (obj.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data
            obj.setdefault("type", "Opaque")
        if plural == "namespaces":
            obj["status"] = {"phase": "Active"}
        return obj

    def key(self, plural: str, namespace: str | None, name: str) -> tuple[str, str]:
        return (namespace or "" if CORE[plural][1] else "", name)

    def create(self, plural: str, namespace: str | None, obj: Obj) -> Obj:
        obj = self.normalise(plural, obj, namespace)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        key = self.key(plural, meta.get("namespace"), meta["name"])
        if key in self.items[plural]:
            raise KeyError(meta["name"])
        meta |= {"uid": str(uuid.uuid4()), "creationTimestamp": _now()}
        self._bump(obj)
        self.items[plural][key] = obj
        self._emit(plural, "ADDED", obj)
        return obj

    def replace(self, plural: str, namespace: str | None, name: str, obj: Obj) -> Obj:
        key = self.key(plural, namespace, name)
        old = self.items[plural][key]
        obj = self.normalise(plural, obj, namespace)
        for keep in ("uid", "creationTimestamp"):
            obj["metadata"][keep] = old["metadata"][keep]
        self._bump(obj)
        self.items[plural][key] = obj
        self._emit(plural, "MODIFIED", obj)
        return obj

    def delete(self, plural: str, namespace: str | None, name: str) -> Obj:
        obj = self.items[plural].pop(self.key(plural, namespace, name))
        self._bump(obj)
        self._emit(plural, "DELETED", obj)
        return obj

    def list(self, plural: str, namespace: str | None) -> list[Obj]:
        return [
            o for (ns, _), o in sorted(self.items[plural].items()) if namespace is None or ns == namespace
        ]


class FrontProxy:
    def __init__(self, upstream: str, ssl_ctx: ssl.SSLContext, version: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.ssl = ssl_ctx
        self.kube_version = version
        self.store = Store()
        self.session: aiohttp.ClientSession | None = None

    # --- helpers ------------------------------------------------------------------------------

    async def _upstream_json(self, path: str) -> Obj:
        assert self.session is not None
        async with self.session.get(f"{self.upstream}{path}", ssl=self.ssl) as resp:
            resp.raise_for_status()
            body: Obj = await resp.json()
            return body

    async def _crds(self) -> list[Obj]:
        body = await self._upstream_json("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        return list(body.get("items") or [])

    # --- discovery, version, openapi ---------------------------------------------------------

    async def api_versions(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}],
            }
        )

    async def api_v1(self, _: web.Request) -> web.Response:
        resources = []
        for plural, (kind, namespaced) in CORE.items():
            verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
            resources.append(
                {
                    "name": plural,
                    "singularName": kind.lower(),
                    "namespaced": namespaced,
                    "kind": kind,
                    "verbs": verbs,
                }
            )
        return web.json_response({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})

    async def apis(self, _: web.Request) -> web.Response:
        groups = [await self._upstream_json("/apis/apiextensions.k8s.io")]
        for crd in await self._crds():
            if not _established(crd):
                continue
            group = crd["spec"]["group"]
            versions = [
                {"groupVersion": f"{group}/{v['name']}", "version": v["name"]}
                for v in crd["spec"]["versions"]
                if v.get("served")
            ]
            storage = next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))
            preferred = {"groupVersion": f"{group}/{storage}", "version": storage}
            existing = next((g for g in groups if g["name"] == group), None)
            if existing is None:
                groups.append({"name": group, "versions": versions, "preferredVersion": preferred})
            else:
                existing["versions"] += [v for v in versions if v not in existing["versions"]]
        for g in groups:
            g.pop("kind", None)
            g.pop("apiVersion", None)
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def version_info(self, _: web.Request) -> web.Response:
        body = await self._upstream_json("/version")
        # A GOPATH build says v0.0.0-master; the package's library version v0.N.x is Kubernetes v1.N.x.
        major, minor = self.kube_version.lstrip("v").split(".")[:2]
        body |= {"major": major, "minor": minor, "gitVersion": self.kube_version}
        return web.json_response(body)

    async def _openapi_docs(self) -> dict[str, Obj]:
        docs: dict[str, Obj] = {"api/v1": _core_openapi()}
        docs["apis/apiextensions.k8s.io/v1"] = _doc(
            [("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False)],
            {
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition": {
                    "type": "object"
                }
            },
        )
        for crd in await self._crds():
            if not _established(crd):
                continue
            spec = crd["spec"]
            for v in spec["versions"]:
                if not v.get("served"):
                    continue
                schema = copy.deepcopy(v.get("schema", {}).get("openAPIV3Schema") or {"type": "object"})
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                gvk = (
                    spec["group"],
                    v["name"],
                    spec["names"]["kind"],
                    spec["names"]["plural"],
                    spec["scope"] == "Namespaced",
                )
                schema_name = (
                    ".".join(reversed(spec["group"].split("."))) + f".{v['name']}.{spec['names']['kind']}"
                )
                schema["x-kubernetes-group-version-kind"] = [
                    {"group": gvk[0], "version": gvk[1], "kind": gvk[2]}
                ]
                docs[f"apis/{spec['group']}/{v['name']}"] = _doc([gvk], {schema_name: schema})
        return docs

    async def openapi_root(self, _: web.Request) -> web.Response:
        docs = await self._openapi_docs()
        paths = {
            key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={_hash(doc)}"} for key, doc in docs.items()
        }
        return web.json_response({"paths": paths})

    async def openapi_doc(self, request: web.Request) -> web.Response:
        docs = await self._openapi_docs()
        doc = docs.get(request.match_info["path"])
        if doc is None:
            return _status(404, "NotFound", "no such OpenAPI document")
        return web.json_response(doc)

    # --- core objects in memory ---------------------------------------------------------------

    async def core(self, request: web.Request) -> web.StreamResponse:
        ns = request.match_info.get("ns")
        plural = request.match_info["plural"]
        name = request.match_info.get("name")
        if plural not in CORE:
            if request.method == "GET":
                return await self._empty(request, plural, ns)
            return _status(404, "NotFound", f"the front proxy holds no {plural}")
        if "protobuf" in request.content_type:
            return _status(
                415, "UnsupportedMediaType", "send JSON: this front holds core objects as JSON only"
            )
        store = self.store
        try:
            if request.method == "GET" and name is None:
                if request.query.get("watch") in ("true", "1"):
                    return await self._watch(request, plural, ns)
                items = store.list(plural, ns)
                kind = CORE[plural][0]
                return web.json_response(
                    {
                        "kind": f"{kind}List",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(store.rv)},
                        "items": items,
                    }
                )
            if request.method == "GET":
                return web.json_response(store.items[plural][store.key(plural, ns, name or "")])
            if request.method == "POST":
                body = await request.json()
                if request.query.get("dryRun"):
                    return web.json_response(store.normalise(plural, body, ns), status=201)
                return web.json_response(store.create(plural, ns, body), status=201)
            assert name is not None
            if request.method == "PUT":
                return web.json_response(store.replace(plural, ns, name, await request.json()))
            if request.method == "PATCH":
                current = store.items[plural][store.key(plural, ns, name)]
                text = await request.text()
                patch = yaml.safe_load(text) if "apply-patch" in request.content_type else json.loads(text)
                if "json-patch" in request.content_type:
                    return _status(
                        415, "UnsupportedMediaType", "JSON patch is not supported by the front proxy"
                    )
                merged = merge_patch(current, patch)
                if request.query.get("dryRun"):
                    return web.json_response(merged)
                return web.json_response(store.replace(plural, ns, name, merged))
            if request.method == "DELETE":
                return web.json_response(store.delete(plural, ns, name))
        except KeyError as err:
            if request.method == "POST":
                return _status(409, "AlreadyExists", f"{plural} {err.args[0]!r} already exists")
            return _status(404, "NotFound", f'{plural} "{name}" not found')
        return _status(405, "MethodNotAllowed", request.method)

    async def _empty(self, request: web.Request, plural: str, ns: str | None) -> web.StreamResponse:
        """Any other resource the API server's informers ask for: an empty list or watch."""
        if request.query.get("watch") in ("true", "1"):
            return await self._watch(request, plural, ns)
        return web.json_response(
            {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []}
        )

    async def _watch(self, request: web.Request, plural: str, ns: str | None) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        watcher = Watcher(plural, ns)
        known = plural in CORE
        since = request.query.get("resourceVersion", "")
        initial = request.query.get("sendInitialEvents") == "true" or since in ("", "0")
        if known:
            self.store.watchers.append(watcher)
        try:
            if known and initial:
                for obj in self.store.list(plural, ns):
                    await _send(resp, {"type": "ADDED", "object": obj})
            elif known and since.isdigit():
                for rv, p, event in list(self.store.log):
                    same_ns = ns is None or event["object"]["metadata"].get("namespace") == ns
                    if p == plural and rv > int(since) and same_ns:
                        await _send(resp, event)
            if request.query.get("sendInitialEvents") == "true":
                kind = CORE.get(plural, ("Unknown", True))[0]
                bookmark = {
                    "kind": kind,
                    "apiVersion": "v1",
                    "metadata": {
                        "resourceVersion": str(self.store.rv),
                        "annotations": {INITIAL_EVENTS_END: "true"},
                    },
                }
                await _send(resp, {"type": "BOOKMARK", "object": bookmark})
            timeout = float(request.query.get("timeoutSeconds") or 1800)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (left := deadline - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), timeout=left)
                except TimeoutError:
                    break
                await _send(resp, event)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            if watcher in self.store.watchers:
                self.store.watchers.remove(watcher)
        return resp

    # --- the API server's own delegation --------------------------------------------------------

    async def token_review(self, request: web.Request) -> web.Response:
        body = await request.json()
        body["status"] = {
            "authenticated": True,
            "user": {"username": "leadflow-test-admin", "groups": ["system:masters", "system:authenticated"]},
        }
        return web.json_response(body, status=201)

    async def access_review(self, request: web.Request) -> web.Response:
        body = await request.json()
        body["status"] = {"allowed": True, "reason": "leadflow test stand-in allows everything"}
        return web.json_response(body, status=201)

    # --- pass-through -------------------------------------------------------------------------

    async def passthrough(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        data = await request.read()
        try:
            upstream = await self.session.request(
                request.method,
                f"{self.upstream}{request.rel_url}",
                headers=headers,
                data=data or None,
                ssl=self.ssl,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            )
        except aiohttp.ClientError as err:
            return _status(502, "BadGateway", f"API server unreachable: {type(err).__name__}")
        async with upstream:
            out = web.StreamResponse(status=upstream.status)
            for k, v in upstream.headers.items():
                if k.lower() not in _HOP and k.lower() != "content-length":
                    out.headers[k] = v
            await out.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
            except (ConnectionResetError, aiohttp.ClientError):
                pass
        return out

    # --- apps ---------------------------------------------------------------------------------

    def front_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get("/api", self.api_versions)
        r.add_get("/api/v1", self.api_v1)
        r.add_get("/apis", self.apis)
        r.add_get("/version", self.version_info)
        r.add_get("/openapi/v3", self.openapi_root)
        r.add_get("/openapi/v3/{path:.+}", self.openapi_doc)
        _core_routes(r, self.core)
        r.add_route("*", "/{path:.*}", self.passthrough)
        return app

    def core_app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self.token_review)
        r.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", self.access_review)
        _core_routes(r, self.core)
        r.add_get("/apis/{group}/{version}/namespaces/{ns}/{plural}", self.core)
        r.add_get("/apis/{group}/{version}/{plural}", self.core)
        return app


_HOP = {
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "te",
    "trailer",
}


def _core_routes(
    r: web.UrlDispatcher, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> None:
    r.add_route("*", "/api/v1/namespaces/{ns}/{plural}", handler)
    r.add_route("*", "/api/v1/namespaces/{ns}/{plural}/{name}", handler)
    r.add_route("*", "/api/v1/{plural}", handler)
    r.add_route("*", "/api/v1/{plural}/{name}", handler)


async def _send(resp: web.StreamResponse, event: Obj) -> None:
    await resp.write(json.dumps(event).encode() + b"\n")


def _established(crd: Obj) -> bool:
    conds = crd.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conds)


def _hash(doc: Obj) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16].upper()


def _doc(resources: list[tuple[str, str, str, str, bool]], schemas: Obj) -> Obj:
    """An OpenAPI v3 document whose PATCH operations carry the GVK and `fieldValidation`, which is
    how kubectl learns that the server validates fields itself."""
    paths: Obj = {}
    for group, version, kind, plural, namespaced in resources:
        prefix = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        item = (
            f"{prefix}/namespaces/{{namespace}}/{plural}/{{name}}"
            if namespaced
            else f"{prefix}/{plural}/{{name}}"
        )
        gvk = {"group": group, "version": version, "kind": kind}
        params = [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        ]
        op = {
            "x-kubernetes-group-version-kind": gvk,
            "responses": {"200": {"description": "OK"}},
            "parameters": params,  # kubectl looks for fieldValidation among the PATCH's own
        }
        paths[item] = {
            "get": {**op, "x-kubernetes-action": "get"},
            "patch": {**op, "x-kubernetes-action": "patch"},
            "put": {**op, "x-kubernetes-action": "put"},
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "test"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _core_openapi() -> Obj:
    resources = [("", "v1", kind, plural, namespaced) for plural, (kind, namespaced) in CORE.items()]
    schemas = {
        f"io.k8s.api.core.v1.{kind}": {
            "type": "object",
            "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": kind}],
        }
        for kind, _ in CORE.values()
    }
    return _doc(resources, schemas)


def _write_ports(path: Path, ports: dict[str, int]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ports))
    tmp.replace(path)  # atomic: the starter never reads half a file


async def _serve(args: argparse.Namespace) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # loopback to the server's self-signed serving certificate
    ctx.load_cert_chain(args.cert, args.key)
    proxy = FrontProxy(args.upstream, ctx, args.version)
    proxy.session = aiohttp.ClientSession()
    runners = []
    ports: dict[str, int] = {}
    for label, app in (("front", proxy.front_app()), ("core", proxy.core_app())):
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        ports[label] = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        runners.append(runner)
    _write_ports(Path(args.ports_file), ports)
    try:
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()
        await proxy.session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--ports-file", required=True)
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()

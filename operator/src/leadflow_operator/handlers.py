"""kopf handlers: thin glue between Tenant objects, their Secrets and compliance.

What to do is decided in `reconcile` (pure); here we only read, call, and write the patch.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import grpc
import grpc.aio
import kopf

from leadflow.v1 import tenant_pb2
from leadflow_core.tenant_spec import TenantSpec
from leadflow_operator import reconcile
from leadflow_operator.compliance import TenantAdmin
from leadflow_operator.kube import KubeAccess, KubeUnavailable
from leadflow_operator.reconcile_metrics import record_reconcile, serve_metrics_once
from leadflow_operator.resource import API_KEY_SECRET_SUFFIX, FINALIZER, GROUP, PLURAL, VERSION
from leadflow_operator.settings import OperatorSettings, require_port

# Timers are declared at import, so their interval is read here; everything else in startup.
USAGE_INTERVAL = OperatorSettings().operator_usage_interval_seconds
RETRY_DELAY = 10.0
MISSING_SECRET_DELAY = 30.0
# A Tenant refused for its name retries this often, so it takes over once the holder is deleted.
CONFLICT_DELAY = 10.0


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    cfg = OperatorSettings()
    require_port(cfg.compliance_addr)
    # Our own annotations and finalizer, and nothing of kopf's in `.status` (the CRD prunes it).
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    # No cluster-wide watching of namespaces and CRDs: the chart's RBAC is one namespace's Role.
    settings.scanning.disabled = True
    settings.networking.request_timeout = 60
    settings.watching.server_timeout = 300
    memo.cfg = cfg
    serve_metrics_once(cfg.operator_metrics_addr, cfg.metrics_port_file)
    memo.admin = TenantAdmin(cfg.compliance_addr, cfg.rpc_timeout_seconds)
    memo.kube = KubeAccess()


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    admin: TenantAdmin = memo.admin
    await admin.close()


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    cfg: OperatorSettings = memo.cfg
    info: kopf.ConnectionInfo | None
    if cfg.operator_kube_server:
        info = kopf.ConnectionInfo(
            server=cfg.operator_kube_server, default_namespace=cfg.operator_namespace or None
        )
    else:
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    # The Secret reader uses the same credentials kopf does.
    kube: KubeAccess = memo.kube
    kube.info = info
    return info


# --- indexes: kept by kopf from the Tenant watch, read by the handlers ------------------------


@kopf.index(GROUP, VERSION, PLURAL)
def tenant_claims(
    name: str, namespace: str | None, meta: kopf.Meta, status: kopf.Status, **_: Any
) -> dict[str, tuple[str, str, str]]:
    """Tenant name -> the claim (`reconcile.name_claim`) of every Tenant using it."""
    return {name: reconcile.name_claim(str(meta.get("creationTimestamp") or ""), namespace or "", status)}


@kopf.index(GROUP, VERSION, PLURAL)
def tenant_secrets(name: str, namespace: str | None, spec: kopf.Spec, **_: Any) -> dict[tuple[str, str], str]:
    """(namespace, Secret name) -> the Tenants that refer to that Secret."""
    return {(namespace or "", secret): name for secret in reconcile.referenced_secrets(spec)}


@kopf.index(GROUP, VERSION, PLURAL)
def tenant_bodies(name: str, namespace: str | None, body: kopf.Body, **_: Any) -> dict[tuple[str, str], Any]:
    """(namespace, name) -> a snapshot of the Tenant, for re-applies the Secret watch starts."""
    return {(namespace or "", name): copy.deepcopy(dict(body))}


def _owner(claims: kopf.Index[str, tuple[str, str, str]], name: str) -> str | None:
    return reconcile.name_owner(claims.get(name, ()))


def _observed(meta: Mapping[str, Any], status: Mapping[str, Any]) -> reconcile.Observed:
    generation = meta.get("generation")
    return reconcile.Observed(
        generation=int(generation) if generation is not None else None,
        conditions=list(status.get("conditions") or []),
        now=datetime.now(UTC),
    )


async def _read_secrets(
    kube: KubeAccess, namespace: str, spec: TenantSpec
) -> dict[str, dict[str, str] | None]:
    out: dict[str, dict[str, str] | None] = {}
    for ref in reconcile.secret_refs(spec).values():
        if ref.name not in out:
            raw = await kube.read_secret(namespace, ref.name)
            out[ref.name] = None if raw is None else reconcile.decode_secret_data(raw)
    return out


@dataclass
class Outcome:
    """What one apply attempt came to: status to write, an Event to post, and whether to retry."""

    status: dict[str, Any]
    event: tuple[str, str] | None = None  # (reason, message)
    warning: bool = False
    retry: reconcile.Retry | None = None
    delay: float = RETRY_DELAY
    message: str = ""
    tenant: tenant_pb2.Tenant | None = None


def _failure(
    obs: reconcile.Observed, reason: str, message: str, retry: reconcile.Retry, *, reachable: bool = True
) -> Outcome:
    return Outcome(
        reconcile.failed_status(obs, reason, message, reachable=reachable),
        (reason, message),
        warning=True,
        retry=retry,
        message=message,
    )


async def _attempt(
    name: str,
    namespace: str | None,
    raw_spec: Mapping[str, Any],
    status: Mapping[str, Any],
    obs: reconcile.Observed,
    memo: kopf.Memo,
    *,
    keep_inactive: bool = False,
) -> Outcome:
    """Read the Secrets, apply the spec to compliance (idempotent), and say what came of it.

    `keep_inactive`: a re-apply nobody asked for (timer, restart, a Secret change) leaves a tenant
    deactivated in compliance as it is; only a change of the spec applies it again."""
    admin: TenantAdmin = memo.admin
    try:
        spec = reconcile.parse_spec(raw_spec)
        secrets = await _read_secrets(memo.kube, namespace or "", spec)
        tenant = reconcile.desired_tenant(name, spec, secrets)
        if keep_inactive:
            held = await admin.get(name)
            if held is not None and not held.active:
                return Outcome(reconcile.deactivated_status(obs))
        resp = await admin.apply(tenant)
    except reconcile.InvalidSpec as err:
        return _failure(obs, "InvalidSpec", str(err), "permanent")
    except reconcile.MissingSecret as err:
        outcome = _failure(obs, "SecretMissing", str(err), "temporary")
        outcome.delay = MISSING_SECRET_DELAY
        return outcome
    except KubeUnavailable as err:
        return Outcome({}, retry="temporary", message=str(err))
    except grpc.aio.AioRpcError as err:
        message = f"compliance: {err.code().name}: {err.details()}"
        retry = reconcile.retry_kind(err.code())
        reason = "ComplianceUnavailable" if retry == "temporary" else "Rejected"
        return _failure(obs, reason, message, retry, reachable=retry == "permanent")
    return Outcome(
        reconcile.applied_status(obs, resp),
        reconcile.change_event(resp, status.get("phase")),
        tenant=resp.tenant,
    )


def _post(body: kopf.Body, outcome: Outcome) -> None:
    if outcome.event is None:
        return
    reason, message = outcome.event
    if outcome.warning:
        kopf.warn(body, reason=reason, message=message)
    else:
        kopf.info(body, reason=reason, message=message)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile_tenant(
    name: str,
    namespace: str | None,
    spec: kopf.Spec,
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    reason: str,
    **kwargs: Any,
) -> None:
    obs = _observed(meta, status)
    owner = _owner(kwargs["tenant_claims"], name)
    if owner is not None and owner != (namespace or ""):
        message = reconcile.conflict_message(name, owner)
        patch.status.update(reconcile.conflict_status(obs, name, owner))
        kopf.warn(body, reason="NameConflict", message=message)
        record_reconcile("temporary", "NameConflict")
        raise kopf.TemporaryError(message, delay=CONFLICT_DELAY)
    obs = reconcile.without_conflict(obs)
    keep_inactive = reason == "resume"  # a restart is not a request to reactivate
    outcome = await _attempt(name, namespace, spec, status, obs, memo, keep_inactive=keep_inactive)
    if outcome.tenant is not None and not status.get("apiKeySecret"):
        outcome.status["apiKeySecret"] = await _first_api_key(name, namespace or "", body, memo)
    failure = (
        outcome.event[0]
        if outcome.event and outcome.warning
        else ("KubeUnavailable" if outcome.retry else "")
    )
    record_reconcile(outcome.retry, failure)
    patch.status.update(outcome.status)
    _post(body, outcome)
    if outcome.retry == "temporary":
        raise kopf.TemporaryError(outcome.message, delay=outcome.delay)
    if outcome.retry == "permanent":
        raise kopf.PermanentError(outcome.message)


@kopf.timer(GROUP, VERSION, PLURAL, interval=USAGE_INTERVAL, initial_delay=min(5.0, USAGE_INTERVAL))
async def report_usage(
    name: str,
    namespace: str | None,
    spec: kopf.Spec,
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """Re-apply (idempotent: rotated Secrets, a Secret created late, compliance restored or
    changed behind our back all converge here) and write usage. Writes and Events only on change."""
    if meta.get("deletionTimestamp"):
        return  # being deleted: never re-apply what the delete handler deactivates
    obs = _observed(meta, status)
    owner = _owner(kwargs["tenant_claims"], name)
    if owner is not None and owner != (namespace or ""):
        patch.status.update(reconcile.status_changes(status, reconcile.conflict_status(obs, name, owner)))
        return  # the name is another namespace's: never touch its tenant
    obs = reconcile.without_conflict(obs)
    outcome = await _attempt(name, namespace, spec, status, obs, memo, keep_inactive=True)
    changes = reconcile.status_changes(status, outcome.status)
    patch.status.update(changes)
    if changes or not outcome.warning:
        _post(body, outcome)
    if outcome.tenant is None:
        return
    merged = {**status, **changes}
    obs = reconcile.Observed(obs.generation, merged.get("conditions") or [], obs.now)
    admin: TenantAdmin = memo.admin
    try:
        usage = await admin.usage(name)
    except grpc.aio.AioRpcError as err:
        if reconcile.retry_kind(err.code()) == "permanent":
            raise
        unreachable = reconcile.unreachable_status(obs, f"compliance: {err.code().name}")
        patch.status.update(reconcile.status_changes(merged, unreachable))
        return
    fresh = reconcile.usage_status(obs, usage, outcome.tenant)
    if status.get("phase") == "Degraded" and fresh["phase"] != "Degraded":
        kopf.info(body, reason="Recovered", message="compliance reachable again")
    patch.status.update(reconcile.status_changes(merged, fresh))


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def deactivate_tenant(
    name: str,
    namespace: str | None,
    body: kopf.Body,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """Deactivate in compliance; the tenant's data is kept there for audit."""
    owner = _owner(kwargs["tenant_claims"], name)
    if owner is not None and owner != (namespace or ""):
        kopf.info(
            body,
            reason="Released",
            message=f"the name belongs to namespace {owner!r}: its tenant is untouched",
        )
        return
    admin: TenantAdmin = memo.admin
    try:
        existed = await admin.deactivate(name)
    except grpc.aio.AioRpcError as err:
        message = f"compliance: {err.code().name}: {err.details()}"
        kopf.warn(body, reason="DeactivateFailed", message=message)
        if reconcile.retry_kind(err.code()) == "temporary":
            raise kopf.TemporaryError(message, delay=RETRY_DELAY) from None
        raise kopf.PermanentError(message) from None
    if existed:
        kopf.info(body, reason="Deactivated", message="tenant deactivated in compliance; its data is kept")


async def _first_api_key(name: str, namespace: str, body: kopf.Body, memo: kopf.Memo) -> str:
    """Create the tenant's first API key into a Secret named in status (once): the key is seen
    by whoever may read that Secret, and never logged or put in an Event."""
    kube: KubeAccess = memo.kube
    admin: TenantAdmin = memo.admin
    secret = f"{name}{API_KEY_SECRET_SUFFIX}"
    if await kube.read_secret(namespace, secret) is not None:
        return secret  # made by an earlier run whose status write was lost
    key = await admin.create_api_key(name)
    owner = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Tenant",
        "name": name,
        "uid": body.get("metadata", {}).get("uid", ""),
    }
    await kube.create_secret(namespace, secret, {"apiKey": key.api_key, "keyId": key.key_id}, owner)
    kopf.info(
        body, reason="ApiKeyCreated", message=f"first API key stored in Secret {secret!r} (key {key.key_id})"
    )
    return secret


@kopf.on.event("", "v1", "secrets")
async def secret_changed(type: str, name: str, namespace: str | None, memo: kopf.Memo, **kwargs: Any) -> None:
    """A Secret a Tenant refers to was created, changed or deleted: re-apply those Tenants now
    (a rotated token reaches compliance within seconds; a deleted one turns SecretMissing)."""
    if not type:
        return  # the initial listing: the resume handlers apply every Tenant anyway
    ns = namespace or ""
    bodies: kopf.Index[tuple[str, str], Any] = kwargs["tenant_bodies"]
    for tenant_name in set(kwargs["tenant_secrets"].get((ns, name), ())):
        for snapshot in bodies.get((ns, tenant_name), ()):
            await _reapply(snapshot, memo, kwargs["tenant_claims"])


async def _reapply(
    snapshot: Mapping[str, Any], memo: kopf.Memo, claims: kopf.Index[str, tuple[str, str, str]]
) -> None:
    meta = snapshot.get("metadata") or {}
    name, namespace = str(meta.get("name")), str(meta.get("namespace") or "")
    if meta.get("deletionTimestamp") or _owner(claims, name) not in (None, namespace):
        return
    status = snapshot.get("status") or {}
    obs = reconcile.without_conflict(_observed(meta, status))
    outcome = await _attempt(
        name, namespace, snapshot.get("spec") or {}, status, obs, memo, keep_inactive=True
    )
    changes = reconcile.status_changes(status, outcome.status)
    kube: KubeAccess = memo.kube
    if changes:
        try:
            await kube.patch_tenant_status(namespace, name, changes)
        except KubeUnavailable:
            logging.getLogger(__name__).warning("could not write the status of Tenant %s/%s", namespace, name)
    if outcome.event is not None and (changes or not outcome.warning):
        reason, message = outcome.event
        post = kopf.warn if outcome.warning else kopf.info
        post(
            kopf.Body(cast("kopf.RawBody", dict(snapshot))),
            reason=reason,
            message=f"{message} (a Secret it refers to changed)",
        )

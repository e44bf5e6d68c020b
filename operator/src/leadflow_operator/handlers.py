"""kopf handlers: thin glue between Tenant objects, their Secrets and compliance.

What to do is decided in `reconcile` (pure); here we only read, call, and write the patch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio
import kopf

from leadflow.v1 import tenant_pb2
from leadflow_core.tenant_spec import TenantSpec
from leadflow_operator import reconcile
from leadflow_operator.compliance import TenantAdmin
from leadflow_operator.kube import KubeAccess, KubeUnavailable
from leadflow_operator.reconcile_metrics import record_reconcile, serve_metrics_once
from leadflow_operator.resource import FINALIZER, GROUP, PLURAL, VERSION
from leadflow_operator.settings import OperatorSettings

# Timers are declared at import, so their interval is read here; everything else in startup.
USAGE_INTERVAL = OperatorSettings().operator_usage_interval_seconds
RETRY_DELAY = 10.0
MISSING_SECRET_DELAY = 30.0


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    cfg = OperatorSettings()
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
) -> Outcome:
    """Read the Secrets, apply the spec to compliance (idempotent), and say what came of it."""
    admin: TenantAdmin = memo.admin
    try:
        spec = reconcile.parse_spec(raw_spec)
        secrets = await _read_secrets(memo.kube, namespace or "", spec)
        tenant = reconcile.desired_tenant(name, spec, secrets)
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
    **_: Any,
) -> None:
    outcome = await _attempt(name, namespace, spec, status, _observed(meta, status), memo)
    reason = (
        outcome.event[0]
        if outcome.event and outcome.warning
        else ("KubeUnavailable" if outcome.retry else "")
    )
    record_reconcile(outcome.retry, reason)
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
    **_: Any,
) -> None:
    """Re-apply (idempotent: rotated Secrets, a Secret created late, compliance restored or
    changed behind our back all converge here) and write usage. Writes and Events only on change."""
    if meta.get("deletionTimestamp"):
        return  # being deleted: never re-apply what the delete handler deactivates
    obs = _observed(meta, status)
    outcome = await _attempt(name, namespace, spec, status, obs, memo)
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
async def deactivate_tenant(name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Deactivate in compliance; the tenant's data is kept there for audit."""
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

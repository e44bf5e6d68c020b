"""kopf handlers: thin glue between Tenant objects, their Secrets and compliance.

What to do is decided in `reconcile` (pure); here we only read, call, and write the patch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
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
    settings.execution.max_workers = 4
    memo.cfg = cfg
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


async def _apply(
    name: str,
    namespace: str | None,
    raw_spec: Mapping[str, Any],
    body: kopf.Body,
    meta: Mapping[str, Any],
    status: Mapping[str, Any],
    patch: kopf.Patch,
    memo: kopf.Memo,
) -> tenant_pb2.Tenant:
    """Apply the spec to compliance and write the outcome to status. Raises kopf errors."""
    obs = _observed(meta, status)
    admin: TenantAdmin = memo.admin
    try:
        spec = reconcile.parse_spec(raw_spec)
        secrets = await _read_secrets(memo.kube, namespace or "", spec)
        tenant = reconcile.desired_tenant(name, spec, secrets)
        resp = await admin.apply(tenant)
    except reconcile.InvalidSpec as err:
        patch.status.update(reconcile.failed_status(obs, "InvalidSpec", str(err), reachable=True))
        kopf.warn(body, reason="InvalidSpec", message=str(err))
        raise kopf.PermanentError(f"invalid spec: {err}") from None
    except reconcile.MissingSecret as err:
        patch.status.update(reconcile.failed_status(obs, "SecretMissing", str(err), reachable=True))
        kopf.warn(body, reason="SecretMissing", message=str(err))
        raise kopf.TemporaryError(str(err), delay=MISSING_SECRET_DELAY) from None
    except KubeUnavailable as err:
        raise kopf.TemporaryError(str(err), delay=RETRY_DELAY) from None
    except grpc.aio.AioRpcError as err:
        message = f"compliance: {err.code().name}: {err.details()}"
        temporary = reconcile.retry_kind(err.code()) == "temporary"
        reason = "ComplianceUnavailable" if temporary else "Rejected"
        patch.status.update(reconcile.failed_status(obs, reason, message, reachable=not temporary))
        kopf.warn(body, reason=reason, message=message)
        if temporary:
            raise kopf.TemporaryError(message, delay=RETRY_DELAY) from None
        raise kopf.PermanentError(message) from None
    event = reconcile.change_event(resp, status.get("phase"))
    if event is not None:
        kopf.info(body, reason=event[0], message=event[1])
    patch.status.update(reconcile.applied_status(obs, resp.tenant))
    return resp.tenant


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
    await _apply(name, namespace, spec, body, meta, status, patch, memo)


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
    """Usage into status; re-apply when compliance lost or changed what was applied."""
    admin: TenantAdmin = memo.admin
    obs = _observed(meta, status)
    if not reconcile.was_reconciled(status):
        return  # the reconcile handler is still retrying (and reporting) this one
    try:
        held = await admin.get(name)
        if held is None or reconcile.drifted(reconcile.parse_spec(spec), held):
            kopf.info(body, reason="Drift", message="compliance differs from the spec; re-applying")
            held = await _apply(name, namespace, spec, body, meta, status, patch, memo)
            obs = reconcile.Observed(
                obs.generation, patch.status.get("conditions") or obs.conditions, obs.now
            )
        usage = await admin.usage(name)
    except reconcile.InvalidSpec:
        return  # reported by the reconcile handler
    except grpc.aio.AioRpcError as err:
        if reconcile.retry_kind(err.code()) == "temporary":
            message = f"compliance: {err.code().name}"
            if status.get("phase") != "Degraded":
                kopf.warn(body, reason="ComplianceUnavailable", message=message)
            patch.status.update(reconcile.status_changes(status, reconcile.unreachable_status(obs, message)))
            return
        raise
    new_status = reconcile.usage_status(obs, usage, held)
    if status.get("phase") == "Degraded" and new_status["phase"] != "Degraded":
        kopf.info(body, reason="Recovered", message="compliance reachable again")
    patch.status.update(reconcile.status_changes({**status, **patch.status}, new_status))


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

"""TenantAdminService: tenants are created and replaced from their desired state."""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict, ParseDict

from leadflow.v1 import lead_pb2, tenant_pb2, tenants_pb2, tenants_pb2_grpc
from leadflow_compliance import api_key_hashing, recording, secret_sealing
from leadflow_compliance.accounting import Accounts, from_micros
from leadflow_compliance.api_key_registry import FIRST_KEY_NAME, ApiKeyRegistry
from leadflow_compliance.api_key_rpcs import ApiKeyRpcs
from leadflow_compliance.decisions import plan_features
from leadflow_compliance.models import TenantRow
from leadflow_compliance.phone import STATE_CODES
from leadflow_compliance.repository import Repository
from leadflow_compliance.tz_database import known_zones
from leadflow_core import grpc_errors
from leadflow_core.grpc_authz import audit_actor
from leadflow_core.keyring import Keyring, KeyringError
from leadflow_core.logs import get_logger
from leadflow_core.tenant_spec import NAME_RE, is_hhmm
from leadflow_core.timestamps import as_utc, from_proto, to_proto, utcnow

log = get_logger("leadflow.compliance.tenants")

SOURCES = {
    "api": lead_pb2.SOURCE_API,
    "form": lead_pb2.SOURCE_FORM,
    "meta": lead_pb2.SOURCE_META,
    "hubspot": lead_pb2.SOURCE_HUBSPOT,
    "salesforce": lead_pb2.SOURCE_SALESFORCE,
    "zapier": lead_pb2.SOURCE_ZAPIER,
    "marketo": lead_pb2.SOURCE_MARKETO,
    "google": lead_pb2.SOURCE_GOOGLE,
}
# Sources every active tenant has: the direct API is guarded by API keys, not by a source entry.
ALWAYS_ENABLED = frozenset({"api"})
_VOLATILE = ("created_at", "updated_at", "revision")
# A source's path token is part of a URL and the only thing a sender without signatures proves.
PATH_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,128}")


def desired_spec(tenant: tenant_pb2.Tenant) -> dict[str, Any]:
    spec = MessageToDict(tenant, preserving_proto_field_name=True)
    for key in _VOLATILE:
        spec.pop(key, None)
    return spec


def row_to_tenant(row: TenantRow, *, ring: Keyring | None = None) -> tenant_pb2.Tenant:
    """The stored tenant; secrets opened with `ring` (internal config RPCs) or else redacted."""
    tenant = tenant_pb2.Tenant()
    ParseDict(row.spec, tenant, ignore_unknown_fields=True)
    tenant.name = row.name
    tenant.active = row.active
    tenant.paused = row.paused
    tenant.revision = row.revision
    tenant.created_at.CopyFrom(to_proto(as_utc(row.created_at)))
    tenant.updated_at.CopyFrom(to_proto(as_utc(row.updated_at)))
    for section, configs in (("sources", tenant.sources), ("provider_configs", tenant.provider_configs)):
        for config_name, cfg in configs.items():
            if ring is None:
                secret_sealing.redact(cfg)
            else:
                secret_sealing.open_config(row.name, section, config_name, cfg, ring)
    return tenant


class TenantCache:
    """Tenants read per evaluation, cached in this process.

    Writes through this process drop the entry at once and announce the change (PostgreSQL
    NOTIFY, see `tenant_changes`); other processes drop it when the notification arrives.
    While this process is listening for those, entries live `listening_ttl_seconds`; otherwise
    `ttl_seconds` (a pause elsewhere shows within that).
    """

    def __init__(
        self,
        repo: Repository,
        ttl_seconds: float = 1.0,
        listening_ttl_seconds: float = 60.0,
        announce: Callable[[str], None] | None = None,
        listening: threading.Event | None = None,
    ) -> None:
        self.repo = repo
        self.ttl = ttl_seconds
        self.listening_ttl = listening_ttl_seconds
        self._announce = announce
        self._listening = listening or threading.Event()
        self._items: dict[str, tuple[float, tenant_pb2.Tenant | None]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> tenant_pb2.Tenant | None:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        ttl = self.listening_ttl if self._listening.is_set() else self.ttl
        row = self.repo.get_tenant(name)
        tenant = row_to_tenant(row) if row is not None else None
        with self._lock:
            self._items[name] = (now + ttl, tenant)
        return tenant

    def drop(self, name: str | None) -> None:
        """Forget one tenant, or every tenant (None)."""
        with self._lock:
            if name is None:
                self._items.clear()
            else:
                self._items.pop(name, None)

    def invalidate(self, name: str) -> None:
        """After a committed change to `name`: here at once, elsewhere by notification."""
        self.drop(name)
        if self._announce is not None:
            self._announce(name)


def validate(context: grpc.ServicerContext, tenant: tenant_pb2.Tenant) -> None:
    if not NAME_RE.match(tenant.name):
        grpc_errors.invalid_argument(context, "tenant.name", "must be a DNS-1123 label")
    if tenant.budget.daily_usd:
        try:
            budget = Decimal(tenant.budget.daily_usd)
        except InvalidOperation:
            budget = Decimal(-1)
        if not budget.is_finite() or budget < 0:
            grpc_errors.invalid_argument(
                context, "tenant.budget.daily_usd", "must be decimal dollars, e.g. 100.00"
            )
    # The engine reads zones from the pinned tzdata package, so validate against it.
    if tenant.policy.fallback_timezone and tenant.policy.fallback_timezone not in known_zones():
        grpc_errors.invalid_argument(context, "tenant.policy.fallback_timezone", "not an IANA time zone")
    if tenant.policy.recording not in ("", *recording.SETTINGS):
        grpc_errors.invalid_argument(
            context, "tenant.policy.recording", f"must be one of {list(recording.SETTINGS)}"
        )
    if tenant.policy.revocation_scope not in ("", "all_campaigns", "campaign"):
        grpc_errors.invalid_argument(
            context, "tenant.policy.revocation_scope", "must be all_campaigns or campaign"
        )
    for field in ("window_start", "window_end"):
        value = getattr(tenant.policy, field)
        end = field == "window_end"
        if value and not is_hhmm(value, end=end):
            grpc_errors.invalid_argument(
                context,
                f"tenant.policy.{field}",
                "must be HH:MM from 00:00 to 23:59" + (" or 24:00" if end else ""),
            )
    for i, reg in enumerate(tenant.policy.registrations):
        if reg.state not in STATE_CODES:
            grpc_errors.invalid_argument(
                context, f"tenant.policy.registrations[{i}].state", "must be a two-letter US state code"
            )
        if reg.expires and not _is_iso_date(reg.expires):
            grpc_errors.invalid_argument(
                context, f"tenant.policy.registrations[{i}].expires", "must be YYYY-MM-DD"
            )
    for source_name, config in tenant.sources.items():
        for net in config.allowed_source_ranges:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                grpc_errors.invalid_argument(
                    context, f"tenant.sources.{source_name}.allowed_source_ranges", "must be CIDR networks"
                )
        token = config.secrets.get("path_token", "")
        if token and not PATH_TOKEN_RE.fullmatch(token):
            grpc_errors.invalid_argument(
                context,
                f"tenant.sources.{source_name}.path_token",
                "must be 32 to 128 URL-safe characters (e.g. `openssl rand -hex 32`)",
            )
    unknown = set(tenant.sources) - set(SOURCES) - {"calls", "sms", "email"}
    if unknown:
        grpc_errors.invalid_argument(context, "tenant.sources", f"unknown source(s) {sorted(unknown)}")


def _is_iso_date(value: str) -> bool:
    if len(value) != 10 or not value.isascii():
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


class TenantAdminServicer(ApiKeyRpcs, tenants_pb2_grpc.TenantAdminServiceServicer):
    def __init__(
        self,
        repo: Repository,
        accounts: Accounts,
        cache: TenantCache,
        keys: Callable[[], Keyring],
        api_keys: ApiKeyRegistry,
    ) -> None:
        self.repo = repo
        self.accounts = accounts
        self.cache = cache
        self.api_keys = api_keys
        # The keyring as it is now (re-read when key files change: rotation needs no restart).
        self.keys = keys

    def _open(self, context: grpc.ServicerContext, row: TenantRow) -> tenant_pb2.Tenant:
        try:
            return row_to_tenant(row, ring=self.keys())
        except KeyringError as err:
            log.error("tenant_secret_unreadable", tenant=row.name, error=str(err))
            grpc_errors.failed_precondition(
                context, "SECRET_UNREADABLE", "a stored secret does not open with the current keyring"
            )

    def _cached_tenant(self, name: str) -> tenant_pb2.Tenant | None:
        return self.cache.get(name)

    def _row(self, context: grpc.ServicerContext, name: str) -> TenantRow:
        row = self.repo.get_tenant(name) if name else None
        if row is None:
            grpc_errors.not_found(context, "tenant", name)
        return row

    def ApplyTenant(
        self, request: tenants_pb2.ApplyTenantRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.ApplyTenantResponse:
        tenant = request.tenant
        validate(context, tenant)
        spec = desired_spec(tenant)
        sealed_field = secret_sealing.sealed_input(spec)
        if sealed_field:
            grpc_errors.invalid_argument(context, sealed_field, "give the secret's value, not a sealed value")
        stored = self.repo.get_tenant(tenant.name)
        spec = secret_sealing.seal_spec(tenant.name, spec, stored.spec if stored else None, self.keys())
        now = utcnow()
        row, created, changed = self.repo.upsert_tenant(tenant.name, spec, now)
        self.cache.invalidate(tenant.name)
        api_key = ""
        if created and request.issue_api_key:
            api_key, _ = self.api_keys.create(
                tenant.name, FIRST_KEY_NAME, api_key_hashing.DEFAULT_SCOPES, now, revoke_existing=False
            )
        if changed:
            self.repo.audit(
                tenant=tenant.name,
                at=now,
                actor=audit_actor(),
                action="tenant.apply",
                detail={"created": created, "revision": row.revision},
            )
            log.info("tenant_applied", tenant=tenant.name, created=created, revision=row.revision)
        return tenants_pb2.ApplyTenantResponse(
            tenant=row_to_tenant(row), created=created, changed=changed, api_key=api_key
        )

    def GetTenant(
        self, request: tenants_pb2.GetTenantRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.GetTenantResponse:
        return tenants_pb2.GetTenantResponse(tenant=row_to_tenant(self._row(context, request.name)))

    def ListTenants(
        self, request: tenants_pb2.ListTenantsRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.ListTenantsResponse:
        rows = self.repo.list_tenants(request.include_inactive)
        return tenants_pb2.ListTenantsResponse(tenants=[row_to_tenant(r) for r in rows])

    def SetPaused(
        self, request: tenants_pb2.SetPausedRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.SetPausedResponse:
        self._row(context, request.name)
        now = utcnow()
        row = self.repo.update_tenant_flags(request.name, now, paused=request.paused, reason=request.reason)
        self.cache.invalidate(request.name)
        assert row is not None
        self.repo.audit(
            tenant=request.name,
            at=now,
            actor=audit_actor(),
            action="tenant.pause" if request.paused else "tenant.resume",
            detail={"reason": request.reason},
        )
        return tenants_pb2.SetPausedResponse(tenant=row_to_tenant(row))

    def DeactivateTenant(
        self, request: tenants_pb2.DeactivateTenantRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.DeactivateTenantResponse:
        self._row(context, request.name)
        now = utcnow()
        row = self.repo.update_tenant_flags(request.name, now, active=False)
        self.cache.invalidate(request.name)
        assert row is not None
        self.repo.audit(tenant=request.name, at=now, actor=audit_actor(), action="tenant.deactivate")
        return tenants_pb2.DeactivateTenantResponse(tenant=row_to_tenant(row))

    def GetTenantUsage(
        self, request: tenants_pb2.GetTenantUsageRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.GetTenantUsageResponse:
        row = self._row(context, request.name)
        usage = self.accounts.usage(row.name, from_proto(request.at) or utcnow())
        budget = row_to_tenant(row).budget.daily_usd
        return tenants_pb2.GetTenantUsageResponse(
            usage=tenant_pb2.TenantUsage(
                calls_today=usage.calls_today,
                spend_today_usd=from_micros(usage.spend_today_micros),
                active_calls=usage.active_calls,
                calls_last_minute=usage.calls_last_minute,
                calls_last_hour=usage.calls_last_hour,
            ),
            daily_budget_usd=budget,
        )

    def GetSourceConfig(
        self, request: tenants_pb2.GetSourceConfigRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.GetSourceConfigResponse:
        row = self.repo.get_tenant(request.tenant) if request.tenant else None
        if row is None or not row.active:
            grpc_errors.not_found(context, "tenant", request.tenant)
        tenant = self._open(context, row)
        if request.source in tenant.sources:
            config = tenant.sources[request.source]
        elif request.source in ALWAYS_ENABLED:
            config = tenant_pb2.SourceConfig()
        else:
            grpc_errors.not_found(context, "source", f"{request.tenant}/{request.source}")
        config.secret_names[:] = sorted(config.secrets)
        return tenants_pb2.GetSourceConfigResponse(
            config=config,
            policy=tenant.policy,
            tenant_active=True,
            source=SOURCES.get(request.source, lead_pb2.SOURCE_UNSPECIFIED),
        )

    def GetProviderConfig(
        self, request: tenants_pb2.GetProviderConfigRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.GetProviderConfigResponse:
        row = self._row(context, request.tenant)
        tenant = self._open(context, row)
        config = tenant.provider_configs.get(request.kind, tenant_pb2.SourceConfig())
        config.secret_names[:] = sorted(config.secrets)
        return tenants_pb2.GetProviderConfigResponse(
            provider=tenant.providers.get(request.kind, ""),
            config=config,
            policy=tenant.policy,
            tenant_active=tenant.active,
            paused=tenant.paused,
            plan_features=sorted(plan_features(tenant)),
        )

    def RotateSecrets(
        self, request: tenants_pb2.RotateSecretsRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.RotateSecretsResponse:
        ring = self.keys()
        moved = 0
        in_use: set[str] = set()
        rows = self.repo.list_tenants(True)
        try:
            for row in rows:
                # One short transaction per tenant: reads and applies carry on meanwhile.
                moved += self.repo.rewrite_spec(
                    row.name, partial(secret_sealing.reseal_spec, row.name, ring=ring)
                )
                stored = self.repo.get_tenant(row.name)
                in_use |= secret_sealing.key_ids(stored.spec if stored else {})
        except KeyringError as err:
            log.error("secret_rotation_failed", error=str(err))
            grpc_errors.failed_precondition(context, "SECRET_UNREADABLE", str(err))
        self.repo.audit(
            tenant="",
            at=utcnow(),
            actor=audit_actor(),
            action="secrets.rotate",
            detail={"primary": ring.primary, "resealed": moved},
        )
        log.info("secrets_rotated", primary=ring.primary, resealed=moved, tenants=len(rows))
        return tenants_pb2.RotateSecretsResponse(
            tenants=len(rows),
            values_resealed=moved,
            primary_key_id=ring.primary,
            key_ids_in_use=sorted(in_use),
        )

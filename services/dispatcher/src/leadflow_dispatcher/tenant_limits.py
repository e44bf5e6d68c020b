"""Each tenant's limits beside its usage, read from compliance (which owns both)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from leadflow.v1 import admin_pb2, tenants_pb2, tenants_pb2_grpc


def budget_ratio(spend: str, budget: str) -> float:
    """Spend over the daily budget; 0 when no budget is set."""
    try:
        b = Decimal(budget) if budget else Decimal(0)
        return float(Decimal(spend or "0") / b) if b > 0 else 0.0
    except (InvalidOperation, ArithmeticError):
        return 0.0


def read_tenant_limits(
    stub: tenants_pb2_grpc.TenantAdminServiceStub, tenant: str = "", timeout: float = 5.0
) -> list[admin_pb2.TenantLimitState]:
    """One tenant, or every active one; raises grpc.RpcError when compliance cannot answer."""
    if tenant:
        tenants = [stub.GetTenant(tenants_pb2.GetTenantRequest(name=tenant), timeout=timeout).tenant]
    else:
        tenants = list(stub.ListTenants(tenants_pb2.ListTenantsRequest(), timeout=timeout).tenants)
    out = []
    for t in tenants:
        usage = stub.GetTenantUsage(tenants_pb2.GetTenantUsageRequest(name=t.name), timeout=timeout)
        budget = usage.daily_budget_usd or t.budget.daily_usd
        out.append(
            admin_pb2.TenantLimitState(
                tenant=t.name,
                paused=t.paused,
                calls_per_minute=t.limits.calls_per_minute,
                calls_per_hour=t.limits.calls_per_hour,
                calls_per_day=t.limits.calls_per_day,
                concurrent_calls=t.limits.concurrent_calls,
                calls_last_minute=usage.usage.calls_last_minute,
                calls_last_hour=usage.usage.calls_last_hour,
                calls_today=usage.usage.calls_today,
                active_calls=usage.usage.active_calls,
                daily_budget_usd=budget,
                spend_today_usd=usage.usage.spend_today_usd,
                budget_used_ratio=budget_ratio(usage.usage.spend_today_usd, budget),
            )
        )
    return out

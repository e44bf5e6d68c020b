"""The tenant's business day: per-day call limits and the daily budget run midnight to midnight
in the tenant's own zone (`Tenant.timezone`, UTC when unset), DST days included (23 or 25 h)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

from leadflow_compliance.accounting import TenantDay
from leadflow_compliance.tz_database import zone


def tenant_zone(name: str) -> tzinfo:
    return zone(name) if name else UTC


def day_of(zone_name: str, at: datetime) -> date:
    return at.astimezone(tenant_zone(zone_name)).date()


def next_midnight(zone_name: str, at: datetime) -> datetime:
    """The UTC instant the tenant's next day begins. Built from the local date (not `at + 24 h`),
    so a day that gains or loses an hour ends at its own midnight."""
    tz = tenant_zone(zone_name)
    tomorrow = at.astimezone(tz).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time.min, tzinfo=tz).astimezone(UTC)


def business_day(zone_name: str, at: datetime) -> TenantDay:
    return TenantDay(day_of(zone_name, at), next_midnight(zone_name, at))

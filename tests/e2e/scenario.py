"""Shared scenario data for the end-to-end tests and the benchmark: tenants, leads, the clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays

NEW_YORK = ZoneInfo("America/New_York")
# A Manhattan number (NANP 212): one state, one time zone.
NY_PHONE = "+12125550143"


def weekday_morning_new_york(now: datetime | None = None) -> datetime:
    """The next Tuesday 11:00 in New York that is no US holiday: callable under every rule."""
    now = now or datetime.now(UTC)
    day = now.astimezone(NEW_YORK).date() + timedelta(days=1)
    us = holidays.country_holidays("US", years=range(day.year, day.year + 2))
    while day.weekday() != 1 or day in us:
        day += timedelta(days=1)
    return datetime.combine(day, time(11, 0), NEW_YORK)


def clock_env(target: datetime | None = None) -> dict[str, str]:
    """Environment that moves the services' clock to `target` (default: a weekday morning)."""
    target = target or weekday_morning_new_york()
    offset = (target - datetime.now(UTC)).total_seconds()
    return {"LEADFLOW_CLOCK_OFFSET_SECONDS": f"{offset:.3f}"}


def tenant_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "displayName": "ACME HVAC",
        "limits": {
            "callsPerMinute": 600,
            "callsPerHour": 6000,
            "callsPerDay": 60000,
            "concurrentCalls": 200,
            "priorityBoostPercent": 20,
        },
        "budget": {"dailyUsd": "1000.00"},
        "policy": {
            "defaultRegion": "US",
            "dialDelaySeconds": {"emergency": 0, "high": 0, "medium": 0, "low": 0},
        },
        "sources": {
            "api": {},
            "form": {"secretRef": {"name": "form"}},
            "calls": {"secretRef": {"name": "calls"}},
        },
        # The simulator signs its status callbacks with the token the gateway checks them with.
        "providers": {"dialer": {"type": "simulator", "secretRef": {"name": "calls"}}},
    }
    spec.update(overrides)
    return spec


BENCH_TENANT_SPEC = tenant_spec(
    limits={
        "callsPerMinute": 100000,
        "callsPerHour": 1000000,
        "callsPerDay": 10000000,
        "concurrentCalls": 10000,
        "priorityBoostPercent": 20,
    },
    budget={"dailyUsd": "1000000.00"},
    sources={"api": {}, "calls": {"secretRef": {"name": "calls"}}},
)


def tenant_secrets(
    form_key: str = "form-key", auth_token: str = "calls-auth-token"
) -> dict[str, dict[str, str]]:
    """Resolved secrets for `tenant_spec()`: source name (or provider:<kind>) -> values."""
    return {
        "form": {"form_key": form_key},
        "calls": {"auth_token": auth_token},
        "provider:dialer": {"auth_token": auth_token},
    }


def lead_body(
    i: int, tag: str = "t", *, consent: bool = True, phone: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A direct-API lead. Distinct `i` values are distinct people (their own phone and email)."""
    body: dict[str, Any] = {
        "first_name": "Ada",
        "last_name": f"Lovelace{i}",
        "phone": phone or (NY_PHONE if i == 0 else f"+1212555{(1000 + i) % 10000:04d}"),
        "email": f"ada.{tag}.{i}@example.com",
        "message": "no heat since last night",
        "vendor_lead_id": f"{tag}-{i}",
    }
    if consent:
        body["consent"] = {
            "granted": True,
            "disclosure_text": "By ticking this box I agree that ACME HVAC may call me with an autodialer.",
            "page_url": "https://acme.example/quote",
            "ip": "203.0.113.9",
            # Full evidence (compliance consent_evidence.py): the seller named, a reference.
            "seller": "ACME HVAC",
            "form_submission_id": f"sub-{tag}-{i}",
        }
    body.update(extra)
    return body

"""Calling windows in the callee's local time: the first allowed instant at or after `t`.

Pure functions over aware datetimes; every comparison is made in UTC so daylight-saving
transitions (a 23- or 25-hour day) fall out of zoneinfo rather than hand arithmetic.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

from leadflow_compliance.rule_table import DayKind

# (start, end) local times of the window on a date, or None: no calls that day.
WindowFor = Callable[[date], tuple[time, time] | None]

HORIZON_DAYS = 14


def day_kind(day: date) -> DayKind:
    weekday = day.weekday()
    return "saturday" if weekday == 5 else "sunday" if weekday == 6 else "weekday"


@functools.cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@functools.cache
def _state_holidays(state: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("US", subdiv=state, years=year).keys())


def is_state_holiday(state: str, day: date) -> bool:
    return day in _state_holidays(state, day.year)


def next_open_in_zone(t: datetime, tz: ZoneInfo, window_for: WindowFor) -> datetime | None:
    """First instant >= t inside the zone's window, or None within the horizon."""
    local_day = t.astimezone(tz).date()
    for offset in range(HORIZON_DAYS):
        day = local_day + timedelta(days=offset)
        window = window_for(day)
        if window is None:
            continue
        start = datetime.combine(day, window[0], tzinfo=tz).astimezone(UTC)
        end = datetime.combine(day, window[1], tzinfo=tz).astimezone(UTC)
        if t < end and start < end:
            return max(t, start)
    return None


def next_open(t: datetime, zones: Sequence[str], window_for: WindowFor) -> datetime | None:
    """First instant >= t open in every zone (a number spanning zones must suit all)."""
    current = t
    for _ in range(4 * HORIZON_DAYS):
        moved = False
        for name in zones:
            candidate = next_open_in_zone(current, zone(name), window_for)
            if candidate is None:
                return None
            if candidate > current:
                current, moved = candidate, True
        if not moved:
            return current
    return None


def daily_window(start: time, end: time) -> WindowFor:
    return lambda _day: (start, end)

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

from leadflow_compliance import tz_database
from leadflow_compliance.rule_table import DayKind

# (start, end) local times of the window on a date, or None: no calls that day.
WindowFor = Callable[[date], tuple[time, time] | None]

HORIZON_DAYS = 14


def day_kind(day: date) -> DayKind:
    weekday = day.weekday()
    return "saturday" if weekday == 5 else "sunday" if weekday == 6 else "weekday"


def zone(name: str) -> ZoneInfo:
    """The zone from the pinned tzdata package (see tz_database)."""
    return tz_database.zone(name)


def easter(year: int) -> date:
    """Gregorian Easter Sunday (the anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month, day = divmod(h + el - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _movable(name: str, year: int) -> date:
    if name == "good_friday":
        return easter(year) - timedelta(days=2)
    # election_day: the Tuesday after the first Monday in November.
    first = date(year, 11, 1)
    monday = first + timedelta(days=(7 - first.weekday()) % 7)
    return monday + timedelta(days=1)


@functools.cache
def _state_holidays(state: str, year: int, extra: tuple[str, ...] = ()) -> frozenset[date]:
    days = set(holidays.country_holidays("US", subdiv=state, years=year).keys())
    for item in extra:
        if "-" in item:
            month, _, day = item.partition("-")
            days.add(date(year, int(month), int(day)))
        else:
            days.add(_movable(item, year))
    return frozenset(days)


def is_state_holiday(state: str, day: date, extra: tuple[str, ...] = ()) -> bool:
    """A legal holiday of the state's `holidays` calendar (observed days included) or a named extra."""
    return day in _state_holidays(state, day.year, extra)


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

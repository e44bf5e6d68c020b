"""Reviewed corrections to phonenumbers' time zones (rules_data/zone_overrides.yaml).

phonenumbers' zone for an exchange can be wrong (Unalaska, AK, is Alaska time, not Honolulu;
Port St. Joe, FL, is Eastern, not Central) and there is no way to correct its data, so this
table is consulted first. Pure: data in, zones out.
"""

from __future__ import annotations

import functools
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadflow_compliance.tz_database import known_zones

_DIGITS = frozenset("0123456789")


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _zone_names(value: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [z for z in value if z not in known_zones()]
    if unknown:
        raise ValueError(f"not IANA zones in the pinned tzdata: {unknown}")
    return value


class ExchangeOverride(_Row):
    prefix: str = ""
    first: str = ""
    last: str = ""
    zones: tuple[str, ...] = Field(min_length=1)
    place: str
    # What phonenumbers answered when the row was reviewed (tests keep it honest).
    phonenumbers_says: tuple[str, ...] = ()
    source: str = Field(min_length=1)
    secondary_source: bool = False

    _zones = field_validator("zones")(_zone_names)

    @model_validator(mode="after")
    def _span(self) -> ExchangeOverride:
        if bool(self.prefix) == bool(self.first or self.last):
            raise ValueError("give either prefix or first/last")
        for value in (self.prefix, self.first, self.last):
            if value and not set(value) <= _DIGITS:
                raise ValueError(f"{value!r}: ASCII digits only")
        if self.prefix and not 6 <= len(self.prefix) <= 10:
            raise ValueError("prefix: area code and exchange (6 to 10 digits)")
        if not self.prefix and (len(self.first) != 10 or len(self.last) != 10 or self.first > self.last):
            raise ValueError("first/last: 10-digit numbers, first <= last")
        return self

    @property
    def low(self) -> str:
        return self.prefix.ljust(10, "0") if self.prefix else self.first

    @property
    def high(self) -> str:
        return self.prefix.ljust(10, "9") if self.prefix else self.last

    def covers(self, national: str) -> bool:
        return self.low <= national <= self.high

    @property
    def size(self) -> int:
        return int(self.high) - int(self.low)


class SplitAreaCode(_Row):
    zones: tuple[str, ...] = Field(min_length=2)
    state: str
    source: str = Field(min_length=1)

    _zones = field_validator("zones")(_zone_names)


class ZoneOverrides(_Row):
    version: str
    exchanges: tuple[ExchangeOverride, ...]
    split_area_codes: dict[str, SplitAreaCode]

    def exchange(self, national: str) -> ExchangeOverride | None:
        """The narrowest row covering the 10-digit national number, if any."""
        rows = [r for r in self.exchanges if r.covers(national)]
        return min(rows, key=lambda r: r.size, default=None)

    def resolve(self, national: str, library_zones: tuple[str, ...]) -> tuple[str, ...]:
        """The zones to use for a NANP number, given what phonenumbers said."""
        row = self.exchange(national)
        if row is not None:
            return row.zones
        split = self.split_area_codes.get(national[:3])
        # phonenumbers named a zone the area code does not span: its data is wrong for this
        # exchange, so every candidate applies (the most restrictive reading).
        if split is not None and not set(library_zones) <= set(split.zones):
            return split.zones
        return library_zones


def parse_overrides(text: str) -> ZoneOverrides:
    return ZoneOverrides.model_validate(yaml.safe_load(text))


@functools.cache
def default_overrides() -> ZoneOverrides:
    text = resources.files("leadflow_compliance.rules_data").joinpath("zone_overrides.yaml").read_text()
    return parse_overrides(text)

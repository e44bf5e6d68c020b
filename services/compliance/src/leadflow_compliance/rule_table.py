"""The rule tables (rules_data/rules.yaml) loaded into typed, immutable rows."""

from __future__ import annotations

import functools
import hashlib
from datetime import time
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

DayKind = Literal["weekday", "saturday", "sunday"]


def parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    # "24:00" ends a window at midnight; 24:01 and later are not times.
    if hours == "24":
        if int(minutes) != 0:
            raise ValueError(f"{value!r} is not a time (24:00 is the only 24:MM)")
        return time(23, 59, 59, 999999)
    return time(int(hours), int(minutes))


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hours(_Row):
    weekday: tuple[str, str] | None = None
    saturday: tuple[str, str] | None = None
    sunday: tuple[str, str] | None = None

    def window(self, kind: DayKind) -> tuple[time, time] | None:
        span: tuple[str, str] | None = getattr(self, kind)
        return None if span is None else (parse_hhmm(span[0]), parse_hhmm(span[1]))


class AttemptCap(_Row):
    max: int = Field(ge=1)
    window_hours: int = Field(ge=1)


class StateRule(_Row):
    name: str
    hours: Hours | None = None
    holiday_ban: bool = False
    attempt_cap: AttemptCap | None = None
    all_party_recording: bool = False
    statute: str
    secondary_source: bool = False


class Cite(_Row):
    statute: str
    inquiry_days: int = 0


class CallingHours(_Row):
    hours: Hours
    statute: str


class Federal(_Row):
    calling_hours: CallingHours
    consent: Cite
    revocation: Cite
    dnc_registry: Cite
    dnc_internal: Cite
    ebr: Cite
    reassigned_numbers: Cite
    unknown_location: Cite


class RuleTable(_Row):
    version: str
    federal: Federal
    states: dict[str, StateRule]

    @property
    def all_party_states(self) -> frozenset[str]:
        return frozenset(code for code, row in self.states.items() if row.all_party_recording)


def parse_table(text: str) -> RuleTable:
    table = RuleTable.model_validate(yaml.safe_load(text))
    # The version names the content too, so an edited row without a bumped version still shows.
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return table.model_copy(update={"version": f"{table.version}+{digest}"})


@functools.cache
def default_table() -> RuleTable:
    text = resources.files("leadflow_compliance.rules_data").joinpath("rules.yaml").read_text()
    return parse_table(text)

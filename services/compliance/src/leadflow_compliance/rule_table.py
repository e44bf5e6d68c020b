"""The rule tables (rules_data/rules.yaml) loaded into typed, immutable rows.

Every rule carries its citation (down to the subsection where the text was read), the date it
takes effect and whether it rests on a secondary source. A state may list several versions of a
rule: the one in force on a date is the latest whose effective date is on or before it, so a
rule enacted for a future date is in the table now and applies only from that date.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import date, time
from importlib import resources
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

DayKind = Literal["weekday", "saturday", "sunday"]
Jurisdiction = Literal["state", "district", "territory"]
# Movable holidays a statute names that the `holidays` calendars may lack.
MOVABLE_HOLIDAYS = frozenset({"good_friday", "election_day"})
DAY_LABELS: dict[DayKind, str] = {"weekday": "Mon-Fri", "saturday": "Sat", "sunday": "Sun"}


@functools.cache
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


def _as_tuple(value: Any) -> Any:
    """A single mapping in YAML is a one-version list."""
    return [value] if isinstance(value, dict) else value


class Rule(_Row):
    statute: str = Field(min_length=1)
    # None: in force since before the table records dates (the enactment date was not noted).
    effective: date | None = None
    secondary_source: bool = False
    note: str = ""

    def in_force(self, day: date) -> bool:
        return self.effective is None or self.effective <= day

    @property
    def effective_label(self) -> str:
        return self.effective.isoformat() if self.effective else "in force"

    def describe(self) -> str:
        """What the rule asks, in a few words (listings and reasons)."""
        return ""


R = TypeVar("R", bound=Rule)


def in_force(versions: tuple[R, ...], day: date) -> R | None:
    """The version in force on `day`: the latest effective on or before it."""
    live = [r for r in versions if r.in_force(day)]
    return max(live, key=lambda r: r.effective or date.min, default=None)


class Hours(_Row):
    weekday: tuple[str, str] | None = None
    saturday: tuple[str, str] | None = None
    sunday: tuple[str, str] | None = None

    def window(self, kind: DayKind) -> tuple[time, time] | None:
        span: tuple[str, str] | None = getattr(self, kind)
        return None if span is None else (parse_hhmm(span[0]), parse_hhmm(span[1]))

    def describe(self) -> str:
        parts = []
        for kind, label in DAY_LABELS.items():
            span: tuple[str, str] | None = getattr(self, kind)
            parts.append(f"{label} {span[0]}-{span[1]}" if span else f"no {label} calls")
        return ", ".join(parts)


class CallingHours(Rule):
    """A window per day kind; a day kind left out means no calls that day."""

    hours: Hours
    # The statute names a fixed zone (Mississippi: "Central Standard Time"): the window must
    # hold in that zone too, so both readings of the text are met.
    also_zone: str = ""

    def describe(self) -> str:
        text = self.hours.describe()
        return f"{text} (also in {self.also_zone})" if self.also_zone else text


class HolidayBan(Rule):
    """No calls on the state's legal holidays (its `holidays` calendar plus named extras)."""

    # Days a statute lists that the calendar lacks: "MM-DD" or a MOVABLE_HOLIDAYS name.
    extra: tuple[str, ...] = ()
    # The `holidays` subdivision whose calendar applies; default: the row's own code.
    calendar: str = ""

    @field_validator("extra")
    @classmethod
    def _known_extras(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if item in MOVABLE_HOLIDAYS:
                continue
            month, _, day = item.partition("-")
            date(2024, int(month), int(day))  # raises on a malformed or impossible day
        return value

    def describe(self) -> str:
        extra = f" and {', '.join(self.extra)}" if self.extra else ""
        return f"no calls on legal holidays ({self.calendar or 'the state'} calendar{extra})"


class AttemptCap(Rule):
    max: int = Field(ge=1)
    window_hours: int = Field(ge=1)
    counts: str = "calls and texts"

    def describe(self) -> str:
        return f"at most {self.max} attempt(s) per {self.window_hours} h ({self.counts})"


class Recording(Rule):
    all_party: bool
    # Courts or commentators disagree; the table takes the stricter reading.
    contested: bool = False

    def describe(self) -> str:
        what = "all-party consent to record" if self.all_party else "one-party consent to record"
        return f"{what} (contested)" if self.contested else what


# Calls a state DNC statute exempts; the engine honours only what the row lists (read the text).
DncExemption = Literal["prior_express_consent", "business_relationship"]


class DncList(Rule):
    list_name: str
    # A loaded copy older than this many days is stale (0: the row records no period).
    refresh_days: int = Field(default=0, ge=0)
    # Exemptions the statute gives; none listed means the list binds every call, consented or not.
    exemptions: tuple[DncExemption, ...] = ()

    def describe(self) -> str:
        parts = [f"state do-not-call list: {self.list_name}"]
        if self.refresh_days:
            parts.append(f"refresh every {self.refresh_days} days")
        parts.append(
            f"exempt: {', '.join(self.exemptions)}" if self.exemptions else "binds consented calls too"
        )
        return "; ".join(parts)


class Registration(Rule):
    duty: str
    # The duty must be met before any call (registration, a bond): it gates dialing.
    gates_calling: bool = False

    def describe(self) -> str:
        return f"{self.duty} (before any call)" if self.gates_calling else self.duty


class StateRule(_Row):
    name: str
    jurisdiction: Jurisdiction = "state"
    # What was looked for and not found (e.g. no stricter calling hours), and how sure.
    finding: str = ""
    finding_secondary: bool = True
    calling_hours: tuple[CallingHours, ...] = ()
    holiday_ban: tuple[HolidayBan, ...] = ()
    attempt_cap: tuple[AttemptCap, ...] = ()
    recording: tuple[Recording, ...] = ()
    dnc_list: tuple[DncList, ...] = ()
    registration: tuple[Registration, ...] = ()

    _wrap = field_validator(
        "calling_hours", "holiday_ban", "attempt_cap", "recording", "dnc_list", "registration", mode="before"
    )(_as_tuple)

    def rules(self) -> list[tuple[str, Rule]]:
        """Every rule of the row with its kind, in table order (for listings)."""
        out: list[tuple[str, Rule]] = []
        for kind in ("calling_hours", "holiday_ban", "attempt_cap", "dnc_list", "registration", "recording"):
            out.extend((kind, r) for r in getattr(self, kind))
        return out

    @property
    def secondary_source(self) -> bool:
        rules = self.rules()
        return any(r.secondary_source for _, r in rules) or (not rules and self.finding_secondary)


class Cite(_Row):
    statute: str
    inquiry_days: int = 0


class FederalHours(_Row):
    hours: Hours
    statute: str


class Federal(_Row):
    calling_hours: FederalHours
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
    # all_party_states by day: every evaluation asks, and the answer only changes when a
    # recording rule's version takes effect (a walk over every state cost ~7 % of compliance CPU).
    # Kept with the `states` it was computed from: model_copy shares private attributes, and a
    # copy with other states must not answer from this one's days.
    _all_party_by_day: tuple[object, dict[date, frozenset[str]]] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _codes(self) -> RuleTable:
        for code in self.states:
            if len(code) != 2 or not code.isascii() or not code.isupper():
                raise ValueError(f"state code {code!r} is not two capital letters")
        return self

    def all_party_states(self, on: date) -> frozenset[str]:
        """Codes whose recording rule in force on `on` requires every party's consent."""
        cache = self._all_party_by_day
        if cache is None or cache[0] is not self.states:
            cache = self._all_party_by_day = (self.states, {})
        known = cache[1].get(on)
        if known is None:
            known = frozenset(code for code in self.states if all_party_consent(self, code, on) is not None)
            cache[1][on] = known
        return known


def all_party_consent(table: RuleTable, state: str, on: date) -> Recording | None:
    """The all-party recording-consent rule in force for `state` on `on`, or None (one-party).

    An unknown state gives None here: the caller decides what unknown means (the engine takes
    the strictest rule when the callee's state cannot be known).
    """
    row = table.states.get(state)
    if row is None:
        return None
    rule = in_force(row.recording, on)
    return rule if rule is not None and rule.all_party else None


def parse_table(text: str) -> RuleTable:
    table = RuleTable.model_validate(yaml.safe_load(text))
    # The version names the content too, so an edited row without a bumped version still shows.
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return table.model_copy(update={"version": f"{table.version}+{digest}"})


def table_text() -> str:
    return resources.files("leadflow_compliance.rules_data").joinpath("rules.yaml").read_text()


@functools.cache
def default_table() -> RuleTable:
    return parse_table(table_text())

"""What a phone number tells us: E.164, line type, time zones and US state (via phonenumbers).

Zones come from the reviewed override table (zone_overrides) first, then phonenumbers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType, geocoder, timezone

from leadflow_compliance.zone_overrides import ZoneOverrides, default_overrides

US_STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "District of Columbia": "DC",
    "Washington D.C.": "DC", "Florida": "FL", "Georgia": "GA", "Hawaii": "HI", "Idaho": "ID",
    "Illinois": "IL", "Indiana": "IN", "Iowa": "IA", "Kansas": "KS", "Kentucky": "KY",
    "Louisiana": "LA", "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA", "Michigan": "MI",
    "Minnesota": "MN", "Mississippi": "MS", "Missouri": "MO", "Montana": "MT", "Nebraska": "NE",
    "Nevada": "NV", "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY",
    "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR",
    "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD",
    "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA",
    "Washington": "WA", "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY",
}  # fmt: skip
# NANP territories are regions of their own in phonenumbers; the TCPA reaches them too.
TERRITORIES = frozenset({"PR", "GU", "VI", "AS", "MP"})
STATE_CODES = frozenset(US_STATES.values()) | TERRITORIES

_LINE_TYPES = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.TOLL_FREE: "toll_free",
}


class InvalidPhone(ValueError):
    """The number cannot be parsed or is not a valid number for its region."""


@dataclass(frozen=True)
class PhoneFacts:
    e164: str
    region: str
    line_type: str
    # IANA zones the number may be in; empty when unknown.
    zones: tuple[str, ...]
    # Two-letter US state from the number's area code, when it names one.
    state: str | None

    @property
    def national_number(self) -> int | None:
        """The 10-digit NANP number (as the DNC Registry keys it), else None."""
        if self.e164.startswith("+1") and len(self.e164) == 12:
            return int(self.e164[2:])
        return None


def state_from_description(description: str) -> str | None:
    """ "Florida" -> FL; "New York, NY" -> NY; anything else -> None."""
    description = description.strip()
    if description in US_STATES:
        return US_STATES[description]
    _, _, tail = description.rpartition(", ")
    return tail if tail in STATE_CODES else None


def analyse(raw: str, default_region: str = "US", overrides: ZoneOverrides | None = None) -> PhoneFacts:
    """Parse and validate; raises InvalidPhone with a reason fit for a field violation."""
    if overrides is None:
        return _analyse_with_default_overrides(raw, default_region)
    return _analyse(raw, default_region, overrides)


# A number's facts never change while the process runs (the reviewed overrides are built in),
# and each lead's number is analysed at ingest and again at every dial gate: the phonenumbers
# lookups cost more than the rest of an evaluation. Invalid numbers raise and are not kept.
@functools.lru_cache(maxsize=32_768)
def _analyse_with_default_overrides(raw: str, default_region: str) -> PhoneFacts:
    return _analyse(raw, default_region, default_overrides())


def _analyse(raw: str, default_region: str, overrides: ZoneOverrides) -> PhoneFacts:
    if not raw.strip():
        raise InvalidPhone("a phone number is required")
    try:
        number = phonenumbers.parse(raw, default_region or "US")
    except phonenumbers.NumberParseException as err:
        raise InvalidPhone(f"not a phone number ({err.error_type})") from err
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("not a valid phone number")
    region = phonenumbers.region_code_for_number(number) or ""
    zones = tuple(z for z in timezone.time_zones_for_number(number) if z != "Etc/Unknown")
    if number.country_code == 1 and zones:
        zones = overrides.resolve(str(number.national_number), zones)
    if region == "US":
        state = state_from_description(geocoder.description_for_number(number, "en"))
    else:
        state = region if region in TERRITORIES else None
    return PhoneFacts(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=region,
        line_type=_LINE_TYPES.get(phonenumbers.number_type(number), "other"),
        zones=zones,
        state=state,
    )

"""The reviewed zone override table, one test per row, and the tzdata package as the zone source."""

from __future__ import annotations

import importlib
import zoneinfo
from datetime import UTC, datetime, timedelta
from importlib import metadata, resources
from pathlib import Path

import phonenumbers
import pytest
from phonenumbers import timezone
from pydantic import ValidationError

from leadflow_compliance import tz_database
from leadflow_compliance.engine import Facts, evaluate
from leadflow_compliance.phone import analyse
from leadflow_compliance.rule_table import default_table
from leadflow_compliance.zone_overrides import default_overrides, parse_overrides

OVERRIDES = default_overrides()
TABLE = default_table()

# Written by hand from the sources, one per row of zone_overrides.yaml `exchanges`.
EXPECTED_ROWS = {
    "907581": ("America/Anchorage",),  # Unalaska: Alaska time, 49 CFR 71.11
    "850227": ("America/New_York",),  # Port St. Joe: Eastern
    "850229": ("America/New_York",),  # Port St. Joe: Eastern
    "850639": ("America/Chicago",),  # Wewahitchka: Central
    "850648": ("America/Chicago", "America/New_York"),  # Mexico Beach / St. Joe Beach
    "928871": ("America/Denver",),  # Window Rock, Navajo Nation
    "928729": ("America/Denver",),  # Fort Defiance, Navajo Nation
    "928674": ("America/Denver",),  # Chinle, Navajo Nation
    "928697": ("America/Denver",),  # Kayenta, Navajo Nation
    "928283": ("America/Denver", "America/Phoenix"),  # Tuba City, next to Hopi Moenkopi
}


def test_every_row_has_a_hand_written_expectation() -> None:
    assert {row.prefix for row in OVERRIDES.exchanges} == set(EXPECTED_ROWS)
    assert all(row.source.strip() for row in OVERRIDES.exchanges)


@pytest.mark.parametrize("prefix", sorted(EXPECTED_ROWS))
def test_override_row(prefix: str) -> None:
    row = OVERRIDES.exchange(prefix + "0100")
    assert row is not None
    assert row.prefix == prefix
    # What phonenumbers says is still what the row was reviewed against: when a phonenumbers
    # upgrade changes it, the row must be looked at again.
    number = phonenumbers.parse(f"+1{prefix}0100")
    assert timezone.time_zones_for_number(number) == row.phonenumbers_says
    facts = analyse(f"+1{prefix}0100")
    assert facts.zones == EXPECTED_ROWS[prefix]
    # The whole exchange is covered, not just one number.
    assert analyse(f"+1{prefix}9999").zones == EXPECTED_ROWS[prefix]


def test_unalaska_at_0530_utc_in_july_waits_for_0800_alaska_time() -> None:
    now = datetime(2026, 7, 15, 5, 30, tzinfo=UTC)  # 21:30 AKDT; phonenumbers says 19:30 HST
    facts = Facts(now=now, phone=analyse("+19075811234"), consent_at=now - timedelta(days=1))
    verdict = evaluate(facts, TABLE)
    assert verdict.zones == ("America/Anchorage",)
    assert verdict.action == "defer"
    assert verdict.not_before == datetime(2026, 7, 15, 16, 0, tzinfo=UTC)  # 08:00 AKDT
    assert "federal.calling_hours" in {r.rule_id for r in verdict.reasons}


def test_port_st_joe_is_eastern() -> None:
    # 20:30 Central would be allowed; it is 21:30 Eastern in Port St. Joe, and Florida closes at 20:00.
    now = datetime(2026, 11, 18, 2, 30, tzinfo=UTC)
    facts = Facts(now=now, phone=analyse("+18502271234"), consent_at=now - timedelta(days=1))
    verdict = evaluate(facts, TABLE)
    assert verdict.zones == ("America/New_York",)
    assert verdict.not_before == datetime(2026, 11, 18, 13, 0, tzinfo=UTC)  # 08:00 EST


def test_navajo_nation_observes_dst_the_rest_of_arizona_does_not() -> None:
    july = datetime(2026, 7, 15, 14, 30, tzinfo=UTC)  # 08:30 MDT in Window Rock, 07:30 MST in Flagstaff
    window_rock = evaluate(Facts(now=july, phone=analyse("+19288710100"), consent_at=july), TABLE)
    flagstaff = evaluate(Facts(now=july, phone=analyse("+19287740100"), consent_at=july), TABLE)
    assert window_rock.action == "dial_now"
    assert flagstaff.zones == ("America/Phoenix",)
    assert flagstaff.not_before == datetime(2026, 7, 15, 15, 0, tzinfo=UTC)


def test_tuba_city_takes_the_most_restrictive_candidate() -> None:
    # July: Denver is UTC-6, Phoenix UTC-7. Open at the later opening (08:00 MST = 15:00 UTC),
    # close at the earlier close (21:00 MDT = 03:00 UTC).
    phone = analyse("+19282830100")
    early = datetime(2026, 7, 15, 14, 30, tzinfo=UTC)
    assert evaluate(Facts(now=early, phone=phone, consent_at=early), TABLE).not_before == datetime(
        2026, 7, 15, 15, 0, tzinfo=UTC
    )
    late = datetime(2026, 7, 16, 3, 0, tzinfo=UTC)
    assert evaluate(Facts(now=late, phone=phone, consent_at=late), TABLE).action == "defer"
    just_before = datetime(2026, 7, 16, 2, 59, tzinfo=UTC)
    assert evaluate(Facts(now=just_before, phone=phone, consent_at=just_before), TABLE).action == "dial_now"


@pytest.mark.parametrize(
    ("number", "zones"),
    [
        # Split area codes resolved by exchange (phonenumbers' exchange data, checked here).
        ("+18504340100", ("America/Chicago",)),  # Pensacola, FL
        ("+18502220100", ("America/New_York",)),  # Tallahassee, FL
        ("+19067740100", ("America/Chicago",)),  # Iron Mountain, MI
        ("+15418810100", ("America/Denver",)),  # Ontario, OR (Malheur County)
        ("+13086320100", ("America/Denver",)),  # Scottsbluff, NE
        ("+17014830100", ("America/Denver",)),  # Dickinson, ND
        # Exchanges phonenumbers cannot place: every candidate.
        ("+12085550100", ("America/Boise", "America/Los_Angeles")),
        ("+17015550100", ("America/Denver", "America/North_Dakota/Center")),
    ],
)
def test_split_area_codes(number: str, zones: tuple[str, ...]) -> None:
    assert analyse(number).zones == zones


def test_a_zone_outside_the_area_codes_span_means_every_candidate() -> None:
    # Without the Unalaska row, phonenumbers' Honolulu is not an Alaska zone: all candidates.
    text = resources.files("leadflow_compliance.rules_data").joinpath("zone_overrides.yaml").read_text()
    start = text.index('  - prefix: "907581"')
    end = text.index('  - prefix: "850227"')
    without = parse_overrides(text[:start] + text[end:])
    # The built-in table's answer is kept per number; other overrides are never answered from it.
    assert analyse("+19075810100").zones == ("America/Anchorage",)
    zones = analyse("+19075810100", overrides=without).zones
    assert "Pacific/Honolulu" not in zones
    assert {"America/Anchorage", "America/Adak"} <= set(zones)
    now = datetime(2026, 7, 15, 5, 30, tzinfo=UTC)
    verdict = evaluate(
        Facts(now=now, phone=analyse("+19075810100", overrides=without), consent_at=now), TABLE
    )
    assert verdict.action == "defer"  # 21:30 in Anchorage: the strictest candidate holds


def test_narrowest_row_wins_and_ranges_work() -> None:
    text = (
        'version: "t"\nexchanges:\n'
        '  - {prefix: "907581", zones: [America/Anchorage], place: a, source: s}\n'
        '  - {first: "9075815000", last: "9075815999", zones: [America/Adak], place: b, source: s}\n'
        "split_area_codes: {}\n"
    )
    table = parse_overrides(text)
    assert table.resolve("9075815123", ("Pacific/Honolulu",)) == ("America/Adak",)
    assert table.resolve("9075814999", ("Pacific/Honolulu",)) == ("America/Anchorage",)
    assert table.resolve("9075800000", ("Pacific/Honolulu",)) == ("Pacific/Honolulu",)


@pytest.mark.parametrize(
    "row",
    [
        '{prefix: "90758", zones: [America/Anchorage], place: a, source: s}',  # too short
        '{prefix: "9075\uff181", zones: [America/Anchorage], place: a, source: s}',  # non-ASCII digit
        '{prefix: "907581", zones: [Mars/Olympus], place: a, source: s}',  # unknown zone
        '{prefix: "907581", zones: [America/Anchorage], place: a, source: ""}',  # no source
        '{first: "9075819999", last: "9075810000", zones: [America/Anchorage], place: a, source: s}',
    ],
)
def test_bad_override_rows_are_refused(row: str) -> None:
    with pytest.raises(ValidationError):
        parse_overrides(f'version: "t"\nexchanges:\n  - {row}\nsplit_area_codes: {{}}\n')


def test_zones_come_from_the_pinned_tzdata_package(tmp_path: Path) -> None:
    assert metadata.version("tzdata") == tz_database.PACKAGE_VERSION
    assert tz_database.TZDATA_VERSION == importlib.import_module("tzdata").IANA_VERSION
    # A host zone database that says Anchorage is UTC: the OS path must not be consulted.
    fake = tmp_path / "America"
    fake.mkdir()
    (fake / "Anchorage").write_bytes(resources.files("tzdata.zoneinfo").joinpath("UTC").read_bytes())
    zoneinfo.reset_tzpath(to=[str(tmp_path)])
    tz_database.zone.cache_clear()
    try:
        assert zoneinfo.ZoneInfo.no_cache("America/Anchorage").utcoffset(datetime(2026, 7, 1)) == timedelta(0)
        zone = tz_database.zone("America/Anchorage")
        assert zone.key == "America/Anchorage"
        assert datetime(2026, 7, 1, 12, tzinfo=zone).utcoffset() == timedelta(hours=-8)
    finally:
        zoneinfo.reset_tzpath()
        tz_database.zone.cache_clear()
    with pytest.raises(tz_database.UnknownZone):
        tz_database.zone("../../etc/passwd")


# Hand-written: the states each split area code serves, and a zone it must not be given.
SPLIT_AREA_CODES = {
    "907": ("AK", "Pacific/Honolulu"), "208": ("ID", "America/Chicago"), "986": ("ID", "America/Chicago"),
    "541": ("OR", "America/Chicago"), "458": ("OR", "America/Chicago"), "701": ("ND", "America/New_York"),
    "605": ("SD", "America/New_York"), "308": ("NE", "America/New_York"), "620": ("KS", "America/New_York"),
    "785": ("KS", "America/New_York"), "432": ("TX", "America/New_York"), "915": ("TX", "America/New_York"),
    "850": ("FL", "America/Denver"), "448": ("FL", "America/Denver"), "812": ("IN", "America/Denver"),
    "930": ("IN", "America/Denver"), "219": ("IN", "America/Denver"), "574": ("IN", "America/Denver"),
    "270": ("KY", "America/Denver"), "364": ("KY", "America/Denver"), "606": ("KY", "America/Denver"),
    "423": ("TN", "America/Denver"), "931": ("TN", "America/Denver"), "906": ("MI", "America/Denver"),
    "928": ("AZ", "America/Los_Angeles"), "775": ("NV", "America/Chicago"),
}  # fmt: skip


@pytest.mark.parametrize("area", sorted(SPLIT_AREA_CODES))
def test_split_area_code_row(area: str) -> None:
    state, foreign = SPLIT_AREA_CODES[area]
    row = OVERRIDES.split_area_codes[area]
    assert row.state == state
    assert row.source.strip()
    assert foreign not in row.zones
    # A zone from the wrong region (bad library data) gives every candidate.
    assert OVERRIDES.resolve(f"{area}5550100", (foreign,)) == row.zones
    # A zone the area code spans is kept as phonenumbers gave it.
    assert OVERRIDES.resolve(f"{area}5550100", row.zones[:1]) == row.zones[:1]


def test_every_split_area_code_row_is_tested() -> None:
    assert set(OVERRIDES.split_area_codes) == set(SPLIT_AREA_CODES)


def test_phonenumbers_data_outside_a_split_area_codes_span_is_overridden() -> None:
    """Every phonenumbers zone entry in a split area code is in its span, or has a reviewed row."""
    from phonenumbers.tzdata import TIMEZONE_DATA

    unreviewed = []
    for prefix, zones in TIMEZONE_DATA.items():
        split = OVERRIDES.split_area_codes.get(prefix[1:4]) if prefix.startswith("1") else None
        if split is None or set(zones) <= set(split.zones):
            continue
        if OVERRIDES.exchange(prefix[1:].ljust(10, "0")) is None:
            unreviewed.append((prefix, zones))
    assert unreviewed == []

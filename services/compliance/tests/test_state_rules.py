"""Golden decisions per jurisdiction, written from the statute texts (RULES.md), not the table.

The expected windows below are typed in by hand from the statutes; the engine reads the rules
table. A row corrected wrongly, a day kind dropped or a holiday calendar missed fails here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from leadflow_compliance.engine import Facts, Verdict, evaluate
from leadflow_compliance.phone import analyse
from leadflow_compliance.rule_table import (
    AttemptCap,
    CallingHours,
    Hours,
    Recording,
    RuleTable,
    all_party_consent,
    default_table,
    in_force,
    parse_table,
    table_text,
)

TABLE = default_table()

# One single-zone number per jurisdiction (area code in that jurisdiction).
NUMBERS = {
    "AL": "+12055550100", "AK": "+19072690100", "AZ": "+16025550100", "AR": "+15015550100",
    "CA": "+14155550100", "CO": "+13035550100", "CT": "+12035550100", "DE": "+13025550100",
    "DC": "+12025550100", "FL": "+13055550100", "GA": "+14045550100", "HI": "+18085550100",
    "ID": "+12087460100", "IL": "+13125550100", "IN": "+13175550100", "IA": "+15155550100",
    "KS": "+13165550100", "KY": "+15025550100", "LA": "+15045550100", "ME": "+12075550100",
    "MD": "+14105550100", "MA": "+16175550100", "MI": "+13135550100", "MN": "+16125550100",
    "MS": "+16015550100", "MO": "+13145550100", "MT": "+14065550100", "NE": "+14025550100",
    "NV": "+17025550100", "NH": "+16035550100", "NJ": "+12015550100", "NM": "+15055550100",
    "NY": "+12125550100", "NC": "+19195550100", "ND": "+17017460100", "OH": "+16145550100",
    "OK": "+14055550100", "OR": "+15035550100", "PA": "+12155550100", "RI": "+14015550100",
    "SC": "+18035550100", "SD": "+16053420100", "TN": "+16155550100", "TX": "+12145550100",
    "UT": "+18015550100", "VT": "+18025550100", "VA": "+18045550100", "WA": "+12066330100",
    "WV": "+13045550100", "WI": "+14145550100", "WY": "+13075550100", "PR": "+17875550100",
    "GU": "+16715550100", "VI": "+13405550100", "AS": "+16846330100", "MP": "+16705550100",
}  # fmt: skip

Window = tuple[str, str] | None
FED: Window = ("08:00", "21:00")


def _all(open_: str, close: str) -> tuple[Window, Window, Window]:
    return (open_, close), (open_, close), (open_, close)


# (weekday, saturday, sunday) per the statute; anything not listed: federal 08:00-21:00 daily.
STATUTE_HOURS: dict[str, tuple[Window, Window, Window]] = {
    "AL": (("08:00", "20:00"), ("08:00", "20:00"), None),  # r. 770-X-5-.17(1)(b)
    "CT": _all("09:00", "20:00"),  # 42-288a as amended by P.A. 23-98
    "FL": _all("08:00", "20:00"),  # 501.616(6)(a)
    "KY": _all("10:00", "21:00"),  # KRS 367.46955
    "LA": (("08:00", "20:00"), ("08:00", "20:00"), None),  # R.S. 45:811(2), (3)
    "MD": _all("08:00", "20:00"),  # Com. Law 14-4502
    "MA": _all("08:00", "20:00"),  # 201 CMR 12.02(2)
    "MI": _all("09:00", "21:00"),
    "MN": _all("09:00", "21:00"),
    "MS": (("08:00", "20:00"), ("08:00", "20:00"), None),  # 77-3-723(1)
    "NV": _all("09:00", "20:00"),
    "NM": _all("09:00", "21:00"),  # 57-12-22(B)(5)
    "OK": _all("08:00", "20:00"),  # 775C.4
    "PA": _all("08:00", "21:00"),  # 73 P.S. 2245(a)(1)
    "RI": (("09:00", "18:00"), ("10:00", "17:00"), None),  # 5-61-3.6(a)
    "TX": (("09:00", "21:00"), ("09:00", "21:00"), ("12:00", "21:00")),  # 301.051
    "UT": (("08:00", "21:00"), ("08:00", "21:00"), None),  # 13-25a-103(3)
    "WA": _all("08:00", "20:00"),  # RCW 19.158.040(2)
}
HOLIDAY_BAN = {"AL", "LA", "PA", "RI", "UT"}
# 2026-11-18 Wed, -21 Sat, -22 Sun, -23 Mon: no holiday in any calendar that week.
WEEK = {0: date(2026, 11, 18), 1: date(2026, 11, 21), 2: date(2026, 11, 22)}


def hours_for(code: str, day: date) -> Window:
    kinds = STATUTE_HOURS.get(code, (FED, FED, FED))
    kind = 1 if day.weekday() == 5 else 2 if day.weekday() == 6 else 0
    return kinds[kind]


def local(day: date, hhmm: str, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=tz)


def decide(phone: str, when: datetime, **facts: Any) -> tuple[str, datetime | None, set[str], Verdict]:
    now = when.astimezone(UTC)
    f = replace(Facts(now=now, phone=analyse(phone), consent_at=now - timedelta(days=1)), **facts)
    verdict = evaluate(f, TABLE)
    return verdict.action, verdict.not_before, {r.rule_id for r in verdict.reasons}, verdict


def next_open(code: str, after: date, tz: ZoneInfo) -> datetime:
    day = after + timedelta(days=1)
    while hours_for(code, day) is None:
        day += timedelta(days=1)
    window = hours_for(code, day)
    assert window is not None
    return local(day, window[0], tz)


def minus_minute(hhmm: str) -> str:
    return (datetime.combine(date(2026, 1, 1), time.fromisoformat(hhmm)) - timedelta(minutes=1)).strftime(
        "%H:%M"
    )


def test_every_jurisdiction_has_a_row_and_a_number() -> None:
    assert set(TABLE.states) == set(NUMBERS)
    assert len(TABLE.states) == 56  # 50 states, DC, PR, GU, VI, AS, MP
    for code, number in NUMBERS.items():
        facts = analyse(number)
        assert facts.state == code, (code, facts)
        assert len(facts.zones) == 1, (code, facts)


@pytest.mark.parametrize("code", sorted(NUMBERS))
@pytest.mark.parametrize("kind", [0, 1, 2], ids=["weekday", "saturday", "sunday"])
def test_golden_hours_per_jurisdiction(code: str, kind: int) -> None:
    number = NUMBERS[code]
    tz = ZoneInfo(analyse(number).zones[0])
    day = WEEK[kind]
    window = hours_for(code, day)
    if window is None:
        action, at, rules, verdict = decide(number, local(day, "12:00", tz))
        assert action == "defer", verdict
        assert at == next_open(code, day, tz), verdict
        assert f"state.{code}.calling_hours" in rules
        return
    open_, close = window
    action, at, _, verdict = decide(number, local(day, minus_minute(open_), tz))
    assert (action, at) == ("defer", local(day, open_, tz)), verdict
    assert decide(number, local(day, open_, tz))[0] == "dial_now"
    assert decide(number, local(day, minus_minute(close), tz))[0] == "dial_now"
    action, at, rules, verdict = decide(number, local(day, close, tz))
    assert (action, at) == ("defer", next_open(code, day, tz)), verdict
    if close < "21:00":
        assert f"state.{code}.calling_hours" in rules, verdict


ET, CT, MT = (ZoneInfo(z) for z in ("America/New_York", "America/Chicago", "America/Denver"))


@pytest.mark.parametrize(
    ("code", "local_at", "tz", "expect", "rule"),
    [
        # Utah: Pioneer Day (Fri 2026-07-24) is a state legal holiday; then Saturday 08:00.
        ("UT", "2026-07-24 10:00", MT, "2026-07-25 08:00", "state.UT.holiday"),
        ("UT", "2026-11-26 10:00", MT, "2026-11-27 08:00", "state.UT.holiday"),  # Thanksgiving
        # Pennsylvania: the Act's own list, beyond the `holidays` calendar.
        ("PA", "2026-04-03 10:00", ET, "2026-04-04 08:00", "state.PA.holiday"),  # Good Friday
        ("PA", "2026-06-14 10:00", ET, "2026-06-15 08:00", "state.PA.holiday"),  # Flag Day (a Sunday)
        ("PA", "2026-11-03 10:00", ET, "2026-11-04 08:00", "state.PA.holiday"),  # Election Day
        ("PA", "2026-12-25 10:00", ET, "2026-12-26 08:00", "state.PA.holiday"),
        # Alabama: Confederate Memorial Day (Mon 2026-04-27), Ala. Code 1-3-8.
        ("AL", "2026-04-27 10:00", CT, "2026-04-28 08:00", "state.AL.holiday"),
        # Rhode Island: Victory Day (Mon 2026-08-10).
        ("RI", "2026-08-10 10:00", ET, "2026-08-11 09:00", "state.RI.holiday"),
        # Louisiana: Mardi Gras (Tue 2026-02-17).
        ("LA", "2026-02-17 10:00", CT, "2026-02-18 08:00", "state.LA.holiday"),
    ],
)
def test_state_holidays(code: str, local_at: str, tz: ZoneInfo, expect: str, rule: str) -> None:
    action, at, rules, verdict = decide(NUMBERS[code], datetime.fromisoformat(local_at).replace(tzinfo=tz))
    assert action == "defer", verdict
    assert at == datetime.fromisoformat(expect).replace(tzinfo=tz), verdict
    assert rule in rules


def test_holiday_in_a_state_without_a_ban_is_a_normal_day() -> None:
    action, _, _, verdict = decide(NUMBERS["NY"], datetime(2026, 11, 26, 10, 0, tzinfo=ET))
    assert action == "dial_now", verdict


# DST starts Sunday 2026-03-08 (02:00 -> 03:00) and ends Sunday 2026-11-01 (02:00 -> 01:00).
@pytest.mark.parametrize(
    ("code", "local_at", "tz", "expect_utc"),
    [
        # Utah Saturday night before the change: no Sunday calls, Monday 08:00 MDT = 14:00 UTC.
        ("UT", "2026-03-07 21:30", MT, "2026-03-09 14:00"),
        # Texas on the change Sunday: noon CDT = 17:00 UTC.
        ("TX", "2026-03-08 10:00", CT, "2026-03-08 17:00"),
        # Texas on the fall-back Sunday: noon CST = 18:00 UTC.
        ("TX", "2026-11-01 01:30", CT, "2026-11-01 18:00"),
        # Washington closes at 20:00 PDT on Saturday 2026-03-07 -> Sunday 08:00 PDT = 15:00 UTC.
        ("WA", "2026-03-07 20:00", ZoneInfo("America/Los_Angeles"), "2026-03-08 15:00"),
        # Connecticut on Monday after the change: 09:00 EDT = 13:00 UTC.
        ("CT", "2026-03-09 08:30", ET, "2026-03-09 13:00"),
        # Mississippi's "Central Standard Time": in summer 08:00 CST is 09:00 CDT = 14:00 UTC.
        ("MS", "2026-07-15 08:30", CT, "2026-07-15 14:00"),
    ],
)
def test_dst_change_weeks(code: str, local_at: str, tz: ZoneInfo, expect_utc: str) -> None:
    action, at, _, verdict = decide(NUMBERS[code], datetime.fromisoformat(local_at).replace(tzinfo=tz))
    assert action == "defer", verdict
    assert at == datetime.fromisoformat(expect_utc).replace(tzinfo=UTC), verdict


def test_mississippi_in_winter_is_plain_local_time() -> None:
    assert decide(NUMBERS["MS"], datetime(2026, 1, 14, 8, 0, tzinfo=CT))[0] == "dial_now"
    assert decide(NUMBERS["MS"], datetime(2026, 7, 15, 19, 59, tzinfo=CT))[0] == "dial_now"


@pytest.mark.parametrize("code", ["FL", "OK", "MD"])
def test_three_attempts_per_24_hours(code: str) -> None:
    tz = ZoneInfo(analyse(NUMBERS[code]).zones[0])
    now = datetime(2026, 11, 18, 12, 0, tzinfo=tz)
    three = (now - timedelta(hours=2), now - timedelta(hours=1.5), now - timedelta(hours=1))
    action, at, rules, verdict = decide(NUMBERS[code], now, attempts=three)
    assert (action, at) == ("defer", three[0] + timedelta(hours=24)), verdict
    assert f"state.{code}.attempt_cap" in rules
    assert decide(NUMBERS[code], now, attempts=three[1:])[0] == "dial_now"


def test_florida_cites_each_rule_to_its_subsection() -> None:
    fl = TABLE.states["FL"]
    assert fl.calling_hours[0].statute == "Fla. Stat. 501.616(6)(a)"
    assert fl.attempt_cap[0].statute == "Fla. Stat. 501.616(6)(b)"
    tz = ZoneInfo("America/New_York")
    now = datetime(2026, 11, 18, 20, 30, tzinfo=tz)
    attempts = (now - timedelta(hours=3), now - timedelta(hours=2), now - timedelta(hours=1))
    *_, verdict = decide(NUMBERS["FL"], now, attempts=attempts)
    statutes = {r.rule_id: r.statute for r in verdict.reasons}
    assert statutes["state.FL.calling_hours"].startswith("Fla. Stat. 501.616(6)(a)")
    assert statutes["state.FL.attempt_cap"].startswith("Fla. Stat. 501.616(6)(b)")


def test_secondary_source_rows_say_so_in_the_decision() -> None:
    # Texas hours rest on charts: the deferral says so, and so does an allowed call.
    *_, deferred = decide(NUMBERS["TX"], datetime(2026, 11, 18, 8, 30, tzinfo=CT))
    reason = next(r for r in deferred.reasons if r.rule_id == "state.TX.calling_hours")
    assert reason.secondary_source
    assert "secondary source" in reason.message
    action, _, rules, _ = decide(NUMBERS["TX"], datetime(2026, 11, 18, 12, 0, tzinfo=CT))
    assert action == "dial_now"
    assert "state.TX.calling_hours.secondary_source" in rules
    # New York: "no stricter rule" is itself weak evidence.
    action, _, rules, _ = decide(NUMBERS["NY"], datetime(2026, 11, 18, 12, 0, tzinfo=ET))
    assert action == "dial_now"
    assert "state.NY.secondary_source" in rules
    # Washington's hours were read in the statute: nothing to flag.
    action, _, rules, _ = decide(
        NUMBERS["WA"], datetime(2026, 11, 18, 12, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
    )
    assert action == "dial_now"
    assert not any("secondary" in r for r in rules)


def _with(table: RuleTable, code: str, **rows: object) -> RuleTable:
    states = dict(table.states)
    states[code] = states[code].model_copy(update=rows)
    return table.model_copy(update={"states": states})


def test_a_rule_with_a_future_effective_date_applies_only_from_that_date() -> None:
    # New York gains 09:00-20:00 from 2027-01-01 (a made-up rule, for the mechanism).
    future = CallingHours(
        hours=Hours(weekday=("09:00", "20:00"), saturday=("09:00", "20:00"), sunday=("09:00", "20:00")),
        statute="N.Y. test 1(a)",
        effective=date(2027, 1, 1),
    )
    table = _with(TABLE, "NY", calling_hours=(future,))
    phone = analyse(NUMBERS["NY"])

    def run(local_at: str) -> tuple[str, datetime | None]:
        now = datetime.fromisoformat(local_at).replace(tzinfo=ET).astimezone(UTC)
        v = evaluate(Facts(now=now, phone=phone, consent_at=now - timedelta(days=1)), table)
        return v.action, v.not_before

    assert run("2026-12-30 08:30") == ("dial_now", None)
    assert run("2026-12-31 20:30") == ("dial_now", None)
    # 21:00 on Dec 31: the next window is on Jan 1, under the new rule.
    assert run("2026-12-31 21:00") == ("defer", datetime(2027, 1, 1, 9, 0, tzinfo=ET))
    assert run("2027-01-04 08:30") == ("defer", datetime(2027, 1, 4, 9, 0, tzinfo=ET))


def test_a_future_attempt_cap_waits_for_its_date() -> None:
    cap = AttemptCap(max=1, window_hours=24, statute="N.Y. test 2(b)", effective=date(2027, 1, 1))
    table = _with(TABLE, "NY", attempt_cap=(cap,))
    phone = analyse(NUMBERS["NY"])
    for local_at, action in (("2026-12-30 12:00", "dial_now"), ("2027-01-02 12:00", "defer")):
        now = datetime.fromisoformat(local_at).replace(tzinfo=ET).astimezone(UTC)
        facts = Facts(
            now=now, phone=phone, consent_at=now - timedelta(days=9), attempts=(now - timedelta(hours=2),)
        )
        assert evaluate(facts, table).action == action


def test_versions_of_a_rule_the_latest_in_force_wins() -> None:
    daily = '{weekday: ["08:00", "20:00"], saturday: ["08:00", "20:00"], sunday: ["08:00", "20:00"]}'
    current = f'      hours: {daily}\n      statute: "RCW 19.158.040(2)"\n'
    later = (
        '    - hours: {weekday: ["10:00", "19:00"]}\n'
        '      statute: "RCW later"\n      effective: 2030-01-01\n'
    )
    text = table_text().replace(
        f"    calling_hours:\n{current}", f"    calling_hours:\n{later}    -{current[5:]}"
    )
    wa = parse_table(text).states["WA"]
    assert len(wa.calling_hours) == 2
    before, after = (
        in_force(wa.calling_hours, date(2029, 12, 31)),
        in_force(wa.calling_hours, date(2030, 1, 1)),
    )
    assert before is not None
    assert before.statute == "RCW 19.158.040(2)"
    assert after is not None
    assert after.statute == "RCW later"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("CA", True), ("FL", True), ("IL", True), ("MD", True), ("MA", True), ("MT", True),
        ("NV", True), ("NH", True), ("PA", True), ("WA", True), ("DE", True), ("MI", True),
        ("NY", False), ("TX", False), ("GA", False), ("PR", False), ("ZZ", False),
    ],
)  # fmt: skip
def test_all_party_consent_states(code: str, expected: bool) -> None:
    rule = all_party_consent(TABLE, code, date(2026, 12, 1))
    assert (rule is not None) is expected
    if rule is not None:
        assert rule.statute
        assert rule.contested is (code in {"DE", "MI"})


def test_every_rule_is_cited_and_dated_or_marked() -> None:
    for code, row in TABLE.states.items():
        assert row.rules() or row.finding, code
        for kind, rule in row.rules():
            assert rule.statute.strip(), (code, kind)
            if not rule.secondary_source:
                # A rule read in the text cites a subsection: a parenthesised part or a CMR/r. rule.
                assert "(" in rule.statute, (code, kind, rule.statute)


def test_bad_rows_are_refused() -> None:
    text = table_text()
    with pytest.raises(ValidationError, match="day is out of range"):
        parse_table(text.replace('extra: [good_friday, "06-14", election_day]', 'extra: ["02-30"]'))
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        parse_table(text.replace("max: 3", "max: 0", 1))


def test_all_party_states_follow_the_day_and_the_table_they_were_asked_of() -> None:
    """The set is kept per day: a recording rule taking effect later changes it from its date,
    and a copy of the table with other rows answers from its own rows, not from the original's
    remembered days."""
    day = date(2026, 12, 1)
    assert "CA" in TABLE.all_party_states(day)
    assert "NY" not in TABLE.all_party_states(day)
    ny = TABLE.states["NY"]
    later = Recording(all_party=True, statute="NY later", effective=date(2027, 1, 1))
    changed = _with(TABLE, "NY", recording=(*ny.recording, later))
    assert "NY" not in changed.all_party_states(day)
    assert "NY" in changed.all_party_states(date(2027, 1, 1))
    assert "NY" not in TABLE.all_party_states(date(2027, 1, 1))
    expected = {code for code in TABLE.states if all_party_consent(TABLE, code, day) is not None}
    assert TABLE.all_party_states(day) == expected

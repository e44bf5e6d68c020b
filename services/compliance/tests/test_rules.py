"""The pure rule engine over many (number, state, instant, tenant) cases.

Each case: a number, a local instant in a named zone, overrides of the facts, and the expected
action, the expected first allowed local instant (for DEFER), and rule ids that must be named.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from leadflow_compliance.engine import Facts, Policy, evaluate
from leadflow_compliance.phone import analyse
from leadflow_compliance.rule_table import default_table, parse_table

TABLE = default_table()
ET, CT, MT, PT = (
    ZoneInfo(z) for z in ("America/New_York", "America/Chicago", "America/Boise", "America/Los_Angeles")
)

NY = "+12125550100"
FL = "+13055550100"  # Miami
AL = "+12055550100"  # Birmingham (Central)
LA = "+15045550100"  # New Orleans (Central)
MS = "+16015550100"  # Jackson (Central)
RI = "+14015550100"
KY = "+15025550100"  # Louisville (Eastern)
MI = "+13135550100"  # Detroit (Eastern)
NV = "+17025550100"  # Las Vegas (Pacific)
ME = "+12075550100"
ID = "+12085550100"  # Idaho: Mountain and Pacific
CA = "+14155550100"
TOLL_FREE = "+18005550100"
TORONTO = "+14165550100"


@dataclass
class Case:
    id: str
    phone: str
    local: str
    zone: ZoneInfo
    action: str
    expect_local: str | None = None
    rules: set[str] = field(default_factory=set)
    facts: dict[str, Any] = field(default_factory=dict)


def at(local: str, zone: ZoneInfo) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=zone)


# 2026-11-18 is a Wednesday; 2026-11-21 a Saturday; 2026-11-22 a Sunday.
CASES = [
    Case("ny-20:59-allowed", NY, "2026-11-18 20:59", ET, "dial_now"),
    Case(
        "ny-21:00-deferred",
        NY,
        "2026-11-18 21:00",
        ET,
        "defer",
        "2026-11-19 08:00",
        {"federal.calling_hours"},
    ),
    Case("ny-22:00-next-morning", NY, "2026-11-18 22:00", ET, "defer", "2026-11-19 08:00"),
    Case("ny-07:59-same-morning", NY, "2026-11-18 07:59", ET, "defer", "2026-11-18 08:00"),
    Case("ny-08:00-allowed", NY, "2026-11-18 08:00", ET, "dial_now"),
    Case(
        "fl-20:30-deferred",
        FL,
        "2026-11-18 20:30",
        ET,
        "defer",
        "2026-11-19 08:00",
        {"state.FL.calling_hours"},
    ),
    Case("fl-19:59-allowed", FL, "2026-11-18 19:59", ET, "dial_now"),
    # DST starts 2026-03-08 02:00 (clocks jump to 03:00): 08:00 EDT is 12:00 UTC.
    Case("dst-spring-night", NY, "2026-03-08 01:30", ET, "defer", "2026-03-08 08:00"),
    Case("dst-spring-evening-before", NY, "2026-03-07 21:30", ET, "defer", "2026-03-08 08:00"),
    # DST ends 2026-11-01 02:00 (01:00-02:00 happens twice): 08:00 EST is 13:00 UTC.
    Case("dst-fall-night", NY, "2026-11-01 01:30", ET, "defer", "2026-11-01 08:00"),
    Case("dst-fall-20:59", NY, "2026-11-01 20:59", ET, "dial_now"),
    Case("idaho-07:30-mt-waits-for-pacific", ID, "2026-11-18 07:30", MT, "defer", "2026-11-18 09:00"),
    Case("idaho-09:00-mt-allowed", ID, "2026-11-18 09:00", MT, "dial_now"),
    Case("idaho-21:00-mt-closed", ID, "2026-11-18 21:00", MT, "defer", "2026-11-19 09:00"),
    Case(
        "al-sunday-banned",
        AL,
        "2026-11-22 12:00",
        CT,
        "defer",
        "2026-11-23 08:00",
        {"state.AL.calling_hours"},
    ),
    Case("al-saturday-20:30", AL, "2026-11-21 20:30", CT, "defer", "2026-11-23 08:00"),
    Case("al-christmas-banned", AL, "2026-12-25 12:00", CT, "defer", "2026-12-26 08:00"),
    Case(
        "la-sunday-banned",
        LA,
        "2026-11-22 10:00",
        CT,
        "defer",
        "2026-11-23 08:00",
        {"state.LA.calling_hours"},
    ),
    Case("ms-sunday-banned", MS, "2026-11-22 10:00", CT, "defer", "2026-11-23 08:00"),
    Case(
        "ri-saturday-17:30",
        RI,
        "2026-11-21 17:30",
        ET,
        "defer",
        "2026-11-23 09:00",
        {"state.RI.calling_hours"},
    ),
    Case("ri-weekday-18:30", RI, "2026-11-18 18:30", ET, "defer", "2026-11-19 09:00"),
    Case("ri-thanksgiving", RI, "2026-11-26 12:00", ET, "defer", "2026-11-27 09:00"),
    Case("ky-09:30", KY, "2026-11-18 09:30", ET, "defer", "2026-11-18 10:00", {"state.KY.calling_hours"}),
    Case("mi-08:30", MI, "2026-11-18 08:30", ET, "defer", "2026-11-18 09:00", {"state.MI.calling_hours"}),
    Case("nv-20:15", NV, "2026-11-18 20:15", PT, "defer", "2026-11-19 09:00", {"state.NV.calling_hours"}),
    Case(
        "address-fl-strictest",
        NY,
        "2026-11-18 20:30",
        ET,
        "defer",
        "2026-11-19 08:00",
        {"state.FL.calling_hours"},
        {"address_state": "FL"},
    ),
    Case(
        "tenant-window-narrows",
        NY,
        "2026-11-18 09:00",
        ET,
        "defer",
        "2026-11-18 10:00",
        {"tenant.calling_window"},
        {"policy": Policy(window_start=time(10), window_end=time(18))},
    ),
    Case(
        "tenant-window-end",
        NY,
        "2026-11-18 18:00",
        ET,
        "defer",
        "2026-11-19 10:00",
        facts={"policy": Policy(window_start=time(10), window_end=time(18))},
    ),
    Case("toll-free-fails-closed", TOLL_FREE, "2026-11-18 12:00", ET, "never", rules={"location.unknown"}),
    Case("canada-fails-closed", TORONTO, "2026-11-18 12:00", ET, "never", rules={"location.unknown"}),
    Case(
        "canada-with-fallback",
        TORONTO,
        "2026-11-18 12:00",
        ET,
        "dial_now",
        facts={"policy": Policy(fallback_timezone="America/Toronto")},
    ),
    Case(
        "no-consent",
        NY,
        "2026-11-18 12:00",
        ET,
        "never",
        rules={"consent.missing"},
        facts={"consent_at": None},
    ),
    Case("test-lead", NY, "2026-11-18 12:00", ET, "never", rules={"lead.test"}, facts={"is_test": True}),
    Case(
        "reassigned",
        NY,
        "2026-11-18 12:00",
        ET,
        "never",
        rules={"consent.reassigned"},
        facts={"reassigned": "yes"},
    ),
    Case(
        "internal-dnc",
        NY,
        "2026-11-18 12:00",
        ET,
        "never",
        rules={"dnc.internal"},
        facts={"internal_dnc": True},
    ),
    Case(
        "registry-exempt-by-consent",
        NY,
        "2026-11-18 12:00",
        ET,
        "dial_now",
        rules={"dnc.registry.exempt"},
        facts={"registry_dnc": True},
    ),
    Case(
        "registry-without-consent",
        NY,
        "2026-11-18 12:00",
        ET,
        "never",
        rules={"dnc.registry", "consent.missing"},
        facts={"registry_dnc": True, "consent_at": None},
    ),
    Case(
        "plan-without-auto-dial",
        NY,
        "2026-11-18 12:00",
        ET,
        "never",
        rules={"plan.auto_dial"},
        facts={"plan_features": frozenset({"crm_sync"})},
    ),
    Case(
        "paused", NY, "2026-11-18 12:00", ET, "defer", "2026-11-18 12:05", {"tenant.paused"}, {"paused": True}
    ),
    Case(
        "paused-at-20:58-waits-for-morning",
        NY,
        "2026-11-18 20:58",
        ET,
        "defer",
        "2026-11-19 08:00",
        {"tenant.paused", "federal.calling_hours"},
        {"paused": True},
    ),
]


def run(case: Case) -> tuple[str, datetime | None, set[str], Any]:
    now = at(case.local, case.zone).astimezone(UTC)
    facts = Facts(now=now, phone=analyse(case.phone), consent_at=now - timedelta(days=2))
    facts = replace(facts, **case.facts)
    verdict = evaluate(facts, TABLE)
    return verdict.action, verdict.not_before, {r.rule_id for r in verdict.reasons}, verdict


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_table(case: Case) -> None:
    action, not_before, rules, verdict = run(case)
    assert action == case.action, verdict
    if case.expect_local is None:
        assert not_before is None
    else:
        assert not_before == at(case.expect_local, case.zone), (not_before, verdict)
    assert case.rules <= rules, verdict


def test_fourth_attempt_in_24h_in_florida() -> None:
    now = at("2026-11-18 12:00", ET).astimezone(UTC)
    three = (now - timedelta(hours=3), now - timedelta(hours=2), now - timedelta(hours=1))
    facts = Facts(now=now, phone=analyse(FL), consent_at=now - timedelta(days=1), attempts=three)
    verdict = evaluate(facts, TABLE)
    assert verdict.action == "defer"
    assert verdict.not_before == three[0] + timedelta(hours=24)
    assert "state.FL.attempt_cap" in {r.rule_id for r in verdict.reasons}
    # The third attempt is still allowed; attempts older than 24 h do not count.
    assert evaluate(replace(facts, attempts=three[:2]), TABLE).action == "dial_now"
    old = (now - timedelta(hours=30), *three[:2])
    assert evaluate(replace(facts, attempts=old), TABLE).action == "dial_now"


def test_fourth_attempt_whose_window_ends_at_night_waits_for_morning() -> None:
    now = at("2026-11-18 12:00", ET).astimezone(UTC)
    # The oldest attempt was at 21:00 yesterday (a text): it leaves the window at 21:00 today.
    attempts = (now - timedelta(hours=15), now - timedelta(hours=2), now - timedelta(hours=1))
    facts = Facts(now=now, phone=analyse(FL), consent_at=now - timedelta(days=1), attempts=attempts)
    verdict = evaluate(facts, TABLE)
    assert verdict.not_before == at("2026-11-19 08:00", ET)


def test_maine_one_call_per_eight_hours() -> None:
    now = at("2026-11-18 12:00", ET).astimezone(UTC)
    facts = Facts(
        now=now, phone=analyse(ME), consent_at=now - timedelta(days=1), attempts=(now - timedelta(hours=2),)
    )
    verdict = evaluate(facts, TABLE)
    assert verdict.action == "defer"
    assert verdict.not_before == now + timedelta(hours=6)


@pytest.mark.parametrize(
    ("consent_days", "revoked_days", "expiry", "action", "rule"),
    [
        (10, None, 0, "dial_now", None),
        (31, None, 30, "never", "consent.expired"),
        (29, None, 30, "dial_now", None),
        (10, 5, 0, "never", "consent.revoked"),
        (5, 10, 0, "dial_now", None),  # new consent after the revocation restores
    ],
)
def test_consent_expiry_and_revocation(
    consent_days: int, revoked_days: int | None, expiry: int, action: str, rule: str | None
) -> None:
    now = at("2026-11-18 12:00", ET).astimezone(UTC)
    facts = Facts(
        now=now,
        phone=analyse(NY),
        consent_at=now - timedelta(days=consent_days),
        revoked_at=None if revoked_days is None else now - timedelta(days=revoked_days),
        policy=Policy(consent_expiry_days=expiry),
    )
    verdict = evaluate(facts, TABLE)
    assert verdict.action == action
    if rule:
        assert rule in {r.rule_id for r in verdict.reasons}


def test_emergency_stop_then_calling_hours() -> None:
    now = at("2026-11-18 20:50", ET).astimezone(UTC)
    facts = Facts(now=now, phone=analyse(NY), consent_at=now - timedelta(days=1))
    short = evaluate(replace(facts, emergency_stop_until=now + timedelta(minutes=5)), TABLE)
    assert short.not_before == now + timedelta(minutes=5)
    long = evaluate(replace(facts, emergency_stop_until=now + timedelta(minutes=40)), TABLE)
    assert long.not_before == at("2026-11-19 08:00", ET)
    assert {"emergency_stop", "federal.calling_hours"} <= {r.rule_id for r in long.reasons}


@pytest.mark.parametrize(
    ("phone", "address", "disclosure"),
    [(FL, None, True), (NY, None, False), (CA, None, True), (NY, "MD", True), (TORONTO, None, True)],
)
def test_recording_disclosure(phone: str, address: str | None, disclosure: bool) -> None:
    now = at("2026-11-18 12:00", ET).astimezone(UTC)
    # The caller's number is in New York (one-party): the callee's state decides.
    facts = Facts(now=now, phone=analyse(phone), address_state=address, consent_at=now, caller_state="NY")
    assert evaluate(facts, TABLE).recording_disclosure_required is disclosure


def test_rows_are_data_and_easy_to_correct() -> None:
    """Correcting a row in the table changes the decision and the rules version."""
    text = (
        TABLE.model_dump_json()  # sanity: the table serialises
        and __import__("importlib.resources", fromlist=["files"])
        .files("leadflow_compliance.rules_data")
        .joinpath("rules.yaml")
        .read_text()
    )
    corrected = parse_table(text.replace('"Conn. Gen. Stat. 42-288a', '"Conn. Gen. Stat. 42-288a(x)'))
    assert corrected.version != TABLE.version
    assert corrected.states["CT"].calling_hours[0].statute.startswith("Conn. Gen. Stat. 42-288a(x)")
    fl = TABLE.states["FL"]
    assert fl.calling_hours[0].secondary_source is False
    assert fl.attempt_cap[0].secondary_source is False
    assert TABLE.states["CT"].calling_hours[0].secondary_source is True
    assert all(rule.statute for row in TABLE.states.values() for _, rule in row.rules())

"""State DNC lists and registration duties that gate calling (state_gates.py through the engine).

Expected statutes are typed in from the rules table's rows; a row losing its list, its gate or
its citation fails here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from leadflow_compliance.engine import Facts, Verdict, evaluate
from leadflow_compliance.phone import analyse
from leadflow_compliance.rule_table import DncList, Registration, RuleTable, default_table
from leadflow_compliance.state_gates import GateFacts

TABLE = default_table()
# A weekday afternoon in every zone the numbers below are in: no hour rule interferes.
NOW = datetime(2026, 11, 18, 19, 0, tzinfo=UTC)
NUMBERS = {"TX": "+12145550100", "FL": "+13055550100", "PA": "+12155550100", "CO": "+13035550100"}
# Each gated state's list statute and registration statute, from the rules table.
LIST_STATUTES = {
    "TX": "Tex. Bus. & Com. Code 304.052",
    "FL": "Fla. Stat. 501.059(4)",
    "PA": "73 P.S. 2245.2(a) (effective 2019-12-03)",
    "CO": "C.R.S. 6-1-904(1)(a)",
}
REGISTRATION_STATUTES = {
    "TX": "Tex. Bus. & Com. Code 302.101",
    "FL": "Fla. Stat. 501.605(1)",
    "PA": "73 P.S. 2243(a)",
}
ALL_LOADED = {code: NOW - timedelta(days=1) for code in NUMBERS}
REGISTERED: dict[str, date | None] = dict.fromkeys(REGISTRATION_STATUTES)


def decide(
    code: str,
    *,
    on_lists: frozenset[str] = frozenset(),
    loaded: dict[str, datetime] | None = None,
    registrations: dict[str, date | None] | None = None,
    now: datetime = NOW,
    table: RuleTable = TABLE,
    **facts: Any,
) -> Verdict:
    gates = GateFacts(
        on_lists=on_lists,
        lists_loaded=ALL_LOADED if loaded is None else loaded,
        registrations=REGISTERED if registrations is None else registrations,
    )
    base = Facts(now=now, phone=analyse(NUMBERS[code]), consent_at=now - timedelta(days=1), gates=gates)
    return evaluate(replace(base, **facts), table)


def reason(verdict: Verdict, rule_id: str) -> tuple[str, str]:
    (found,) = [(r.message, r.statute) for r in verdict.reasons if r.rule_id == rule_id]
    return found


@pytest.mark.parametrize("code", ["TX", "FL", "PA", "CO"])
def test_a_number_on_the_state_list_is_refused_citing_the_statute(code: str) -> None:
    v = decide(code, on_lists=frozenset({code}))
    assert v.action == "never"
    assert not v.needs_review
    message, statute = reason(v, f"state.{code}.dnc_list")
    assert statute == LIST_STATUTES[code]
    assert TABLE.states[code].dnc_list[0].list_name in message
    # Every list row but Pennsylvania's rests on charts, and the reason says so.
    assert ("secondary source" in message) == (code != "PA")
    # Express consent does not exempt: none of these rows lists an exemption (statute unread).
    assert v.consent_status == "verified"


@pytest.mark.parametrize("code", ["TX", "FL", "PA", "CO"])
def test_a_number_not_on_the_list_is_allowed(code: str) -> None:
    # On another state's list only: that state is not a candidate for this number.
    other = "CO" if code != "CO" else "TX"
    v = decide(code, on_lists=frozenset({other}))
    assert v.action == "dial_now", v.reasons
    assert not any(r.rule_id.startswith(f"state.{code}.dnc_list") for r in v.reasons)
    assert not any(r.rule_id.startswith(f"state.{code}.registration") for r in v.reasons)


@pytest.mark.parametrize("code", ["TX", "FL", "PA", "CO"])
def test_a_list_never_loaded_is_not_dialed_and_goes_to_review(code: str) -> None:
    loaded = {c: at for c, at in ALL_LOADED.items() if c != code}
    v = decide(code, loaded=loaded)
    assert v.action == "never"
    assert v.needs_review
    message, statute = reason(v, f"state.{code}.dnc_list.not_loaded")
    assert message.startswith(f"state DNC list for {code} (")
    assert "not loaded" in message
    assert statute == LIST_STATUTES[code]


def test_a_list_older_than_its_refresh_period_is_stale() -> None:
    # Florida and Texas lists are quarterly: 92 days at most (rules table).
    for code in ("FL", "TX"):
        assert TABLE.states[code].dnc_list[0].refresh_days == 92
        fresh = decide(code, loaded={code: NOW - timedelta(days=92)})
        assert fresh.action == "dial_now", fresh.reasons
        stale = decide(code, loaded={code: NOW - timedelta(days=92, minutes=1)})
        assert stale.action == "never"
        assert stale.needs_review
        message, _ = reason(stale, f"state.{code}.dnc_list.stale")
        assert "92-day refresh period" in message
    # Colorado's row records no period: an old copy is still a loaded copy.
    assert decide("CO", loaded={"CO": NOW - timedelta(days=400)}).action == "dial_now"


@pytest.mark.parametrize("code", ["TX", "FL", "PA"])
def test_registration_missing_or_expired_refuses_present_allows(code: str) -> None:
    missing = decide(code, registrations={})
    assert missing.action == "never"
    assert missing.needs_review
    message, statute = reason(missing, f"state.{code}.registration")
    assert statute == REGISTRATION_STATUTES[code]
    assert "not registered" in message
    # Registered in another state only.
    assert decide(code, registrations={"UT": None}).action == "never"
    # Valid through the callee's local date of the call; expired the day before refuses.
    local_day = NOW.astimezone(ZoneInfo("America/New_York")).date()
    assert decide(code, registrations={code: local_day}).action == "dial_now"
    expired = decide(code, registrations={code: local_day - timedelta(days=1)})
    assert expired.action == "never"
    message, statute = reason(expired, f"state.{code}.registration.expired")
    assert f"expired on {(local_day - timedelta(days=1)).isoformat()}" in message
    assert statute == REGISTRATION_STATUTES[code]
    assert decide(code, registrations={code: None}).action == "dial_now"


def test_states_without_gates_need_no_registration_or_list() -> None:
    # New York keeps no list row and no gating registration in the table.
    v = evaluate(
        Facts(now=NOW, phone=analyse("+12125550100"), consent_at=NOW - timedelta(days=1), gates=GateFacts()),
        TABLE,
    )
    assert v.action == "dial_now", v.reasons


def test_the_address_state_is_a_candidate_too() -> None:
    # A New York number whose address is in Texas: Texas' gates apply.
    facts = Facts(
        now=NOW,
        phone=analyse("+12125550100"),
        consent_at=NOW - timedelta(days=1),
        address_state="TX",
        gates=GateFacts(on_lists=frozenset({"TX"}), lists_loaded=ALL_LOADED, registrations=REGISTERED),
    )
    v = evaluate(facts, TABLE)
    assert v.action == "never"
    assert "state.TX.dnc_list" in {r.rule_id for r in v.reasons}


def _with(table: RuleTable, code: str, **rows: object) -> RuleTable:
    states = dict(table.states)
    states[code] = states[code].model_copy(update=rows)
    return table.model_copy(update={"states": states})


def test_effective_dates_are_honoured() -> None:
    # A made-up list and registration for New York from 2027-01-01 (for the mechanism).
    start = date(2027, 1, 1)
    table = _with(
        TABLE,
        "NY",
        dnc_list=(DncList(list_name="N.Y. test list", statute="N.Y. test 1(a)", effective=start),),
        registration=(
            Registration(
                duty="N.Y. test registration", gates_calling=True, statute="N.Y. test 2(b)", effective=start
            ),
        ),
    )
    et = ZoneInfo("America/New_York")

    def run(at: datetime, **gates: object) -> Verdict:
        facts = Facts(
            now=at.astimezone(UTC),
            phone=analyse("+12125550100"),
            consent_at=at - timedelta(days=1),
            gates=GateFacts(**gates),  # type: ignore[arg-type]
        )
        return evaluate(facts, table)

    before = datetime(2026, 12, 31, 12, 0, tzinfo=et)
    after = datetime(2027, 1, 1, 12, 0, tzinfo=et)
    # Before the date: neither the list (not loaded, number on it) nor the registration binds.
    assert run(before, on_lists=frozenset({"NY"})).action == "dial_now"
    # From the date: an unloaded list and a missing registration each refuse, citing the row.
    v = run(after)
    assert v.action == "never"
    assert {r.statute for r in v.reasons} == {
        "N.Y. test 1(a) (effective 2027-01-01)",
        "N.Y. test 2(b) (effective 2027-01-01)",
    }
    assert {r.rule_id for r in v.reasons} == {"state.NY.dnc_list.not_loaded", "state.NY.registration"}
    ok = run(after, lists_loaded={"NY": after}, registrations={"NY": None})
    assert ok.action == "dial_now"
    listed = run(after, on_lists=frozenset({"NY"}), lists_loaded={"NY": after}, registrations={"NY": None})
    assert [r.rule_id for r in listed.reasons] == ["state.NY.dnc_list"]
    assert "secondary" not in listed.reasons[0].message


def test_an_exemption_applies_only_where_the_row_lists_it() -> None:
    tx = TABLE.states["TX"]
    exempt = tx.dnc_list[0].model_copy(update={"exemptions": ("prior_express_consent",)})
    table = _with(TABLE, "TX", dnc_list=(exempt,))
    v = decide("TX", on_lists=frozenset({"TX"}), table=table)
    assert v.action == "dial_now"
    (note,) = [r for r in v.reasons if r.rule_id == "state.TX.dnc_list.exempt"]
    assert "prior express consent" in note.message
    # Revoked consent is no consent: the list binds again.
    revoked = decide("TX", on_lists=frozenset({"TX"}), table=table, revoked_at=NOW - timedelta(hours=1))
    assert revoked.action == "never"
    assert "state.TX.dnc_list" in {r.rule_id for r in revoked.reasons}
    # The same number under the shipped row (no exemption listed) is refused.
    assert decide("TX", on_lists=frozenset({"TX"})).action == "never"


def test_rules_listing_names_lists_and_gates() -> None:
    fl = dict(TABLE.states["FL"].rules())
    assert "Florida no sales solicitation calls list" in fl["dnc_list"].describe()
    assert "refresh every 92 days" in fl["dnc_list"].describe()
    assert fl["registration"].describe() == "commercial telephone seller license (before any call)"

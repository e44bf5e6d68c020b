"""State gates on calling: a state's own do-not-call list and registration duties. Pure.

Each applies per candidate state of the callee (number and address), in the version in force on
the callee's local date (the latest of the candidate zones' dates, so a duty taking effect at
midnight binds as soon as it is midnight anywhere the callee may be).

- **State DNC list**: a number on the list is never auto-dialed, unless the row lists an
  exemption the facts meet. A list that was never loaded, or whose copy is older than the row's
  `refresh_days`, cannot be checked: the lead is not auto-dialed and goes to review (what a
  compliance officer expects: nobody vouches for a number nobody could check).
- **Registration** (`gates_calling`): no call to the state unless the tenant's registration
  there is on file and not expired on the call's local date; the lead goes to review too, since
  registering (or renewing) makes it callable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from leadflow_compliance.rule_table import DncList, Registration, Rule, RuleTable, in_force

SECONDARY_NOTE = "rests on a secondary source, not yet checked against the statute"


@dataclass(frozen=True)
class GateFacts:
    """What storage and the tenant say about the state gates for one lead."""

    # States whose DNC list carries the number.
    on_lists: frozenset[str] = frozenset()
    # State -> when its list was last loaded (a state absent here was never loaded).
    lists_loaded: Mapping[str, datetime] = field(default_factory=dict)
    # State -> the tenant's registration expiry there (None: no expiry recorded).
    registrations: Mapping[str, date | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Gate:
    rule_id: str
    message: str
    statute: str
    # "never": not auto-dialed; "dial_now": an informational note (an exemption applied).
    action: str
    review: bool
    secondary_source: bool


def cite(rule: Rule) -> str:
    return f"{rule.statute} (effective {rule.effective})" if rule.effective else rule.statute


def _message(text: str, rule: Rule) -> str:
    return f"{text} ({SECONDARY_NOTE})" if rule.secondary_source else text


def _gate(rule_id: str, text: str, rule: Rule, action: str = "never", review: bool = False) -> Gate:
    return Gate(rule_id, _message(text, rule), cite(rule), action, review, rule.secondary_source)


def evaluate(
    table: RuleTable,
    states: tuple[str, ...],
    local_day: date,
    now: datetime,
    facts: GateFacts,
    exempt: Callable[[DncList], str],
) -> list[Gate]:
    """The gates in force for `states` on `local_day`. `exempt(rule)` names the exemption the
    facts meet for that list ("" when none), e.g. "express consent"."""
    out: list[Gate] = []
    for code in states:
        row = table.states.get(code)
        if row is None:
            continue
        dnc = in_force(row.dnc_list, local_day)
        if dnc is not None:
            out.extend(_dnc_gate(code, row.name, dnc, now, facts, exempt(dnc)))
        reg = in_force(row.registration, local_day)
        if reg is not None and reg.gates_calling:
            out.extend(_registration_gate(code, row.name, reg, local_day, facts))
    return out


def _dnc_gate(
    code: str, name: str, rule: DncList, now: datetime, facts: GateFacts, exemption: str
) -> list[Gate]:
    rule_id = f"state.{code}.dnc_list"
    if exemption:
        return [
            _gate(
                f"{rule_id}.exempt", f"{name}: {rule.list_name} does not bind ({exemption})", rule, "dial_now"
            )
        ]
    loaded = facts.lists_loaded.get(code)
    if loaded is None:
        text = f"state DNC list for {code} ({rule.list_name}) not loaded: the number cannot be checked"
        return [_gate(f"{rule_id}.not_loaded", text, rule, review=True)]
    if rule.refresh_days and now - loaded > timedelta(days=rule.refresh_days):
        text = (
            f"state DNC list for {code} ({rule.list_name}) is stale: loaded {loaded.date().isoformat()},"
            f" older than its {rule.refresh_days}-day refresh period"
        )
        return [_gate(f"{rule_id}.stale", text, rule, review=True)]
    if code in facts.on_lists:
        return [_gate(rule_id, f"the number is on the {rule.list_name} ({name})", rule)]
    return []


def _registration_gate(code: str, name: str, rule: Registration, day: date, facts: GateFacts) -> list[Gate]:
    rule_id = f"state.{code}.registration"
    if code not in facts.registrations:
        text = f"the seller is not registered in {name} ({rule.duty}), which is required before any call"
        return [_gate(rule_id, text, rule, review=True)]
    expires = facts.registrations[code]
    if expires is not None and expires < day:
        text = f"the seller's {name} registration ({rule.duty}) expired on {expires.isoformat()}"
        return [_gate(f"{rule_id}.expired", text, rule, review=True)]
    return []

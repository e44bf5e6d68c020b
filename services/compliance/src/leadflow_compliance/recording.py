"""May this call be recorded, and must the callee hear an announcement first? Pure.

Inputs: the tenant's setting, the callee's state(s) and the caller's state (the state of the
tenant's caller-id number). Where either party is in an all-party-consent state, or a state cannot
be known, recording needs everyone's consent: the announcement prompt (the strictest rule applies
to an unknown state, as RULES.md says for the callee).

- `never` (the default): nothing is recorded.
- `one_party_states_only`: recorded only where both parties are in one-party states; off elsewhere.
- `always_with_announcement`: recorded everywhere, always after the announcement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Setting = Literal["never", "one_party_states_only", "always_with_announcement"]
SETTINGS: tuple[Setting, ...] = ("never", "one_party_states_only", "always_with_announcement")


@dataclass(frozen=True)
class Recording:
    allowed: bool
    # An announcement must play before anything is recorded (the law's or the setting's).
    announcement_required: bool
    reason: str


def setting_of(value: str) -> Setting:
    """Unknown or empty values read as `never`: recording is opt-in."""
    for s in SETTINGS:
        if value == s:
            return s
    return "never"


def all_party_parties(
    callee_states: Iterable[str], caller_state: str | None, all_party: frozenset[str]
) -> list[str]:
    """Why all-party consent applies: each party that is in such a state or cannot be placed."""
    callee = sorted(set(callee_states))
    why: list[str] = []
    if not callee:
        why.append("callee's state unknown")
    why.extend(f"callee in {s} (all-party consent)" for s in callee if s in all_party)
    if not caller_state:
        why.append("caller's state unknown")
    elif caller_state in all_party:
        why.append(f"caller in {caller_state} (all-party consent)")
    return why


def decide(
    setting: str, callee_states: Iterable[str], caller_state: str | None, all_party: frozenset[str]
) -> Recording:
    chosen = setting_of(setting)
    strict = all_party_parties(callee_states, caller_state, all_party)
    law = "; ".join(strict) if strict else "both parties in one-party-consent states"
    if chosen == "never":
        return Recording(False, bool(strict), f"tenant setting 'never'; {law}")
    if chosen == "one_party_states_only":
        if strict:
            return Recording(
                False, True, f"off: all-party consent applies ({law}); setting one_party_states_only"
            )
        return Recording(True, False, f"{law}; setting one_party_states_only")
    return Recording(True, True, f"with announcement (setting always_with_announcement); {law}")

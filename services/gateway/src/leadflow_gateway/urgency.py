"""Urgency from an explicit value or from the lead's own words; the phrases are data, not code."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

from leadflow.v1 import lead_pb2

NAMES: dict[str, lead_pb2.Urgency.ValueType] = {
    "emergency": lead_pb2.URGENCY_EMERGENCY,
    "high": lead_pb2.URGENCY_HIGH,
    "medium": lead_pb2.URGENCY_MEDIUM,
    "low": lead_pb2.URGENCY_LOW,
}
# Sender spellings of the four levels.
_SYNONYMS = {"urgent": "high", "normal": "medium", "critical": "emergency", "asap": "high"}
DEFAULT = lead_pb2.URGENCY_MEDIUM


@dataclass(frozen=True)
class Rule:
    pattern: str
    urgency: lead_pb2.Urgency.ValueType


def parse_explicit(value: str) -> lead_pb2.Urgency.ValueType | None:
    """A sender's urgency field; None when it names no level."""
    key = value.strip().lower()
    return NAMES.get(_SYNONYMS.get(key, key))


@cache
def default_rules() -> tuple[Rule, ...]:
    data = json.loads(resources.files(__package__).joinpath("urgency_rules.json").read_text("utf-8"))
    rules: list[Rule] = []
    for level, phrases in data.items():
        if level in NAMES:
            rules.extend(Rule(p, NAMES[level]) for p in phrases)
    return tuple(rules)


@lru_cache(maxsize=4096)
def _compiled(phrase: str) -> re.Pattern[str]:
    words = phrase.strip().lower().split()
    # Whole words only, with any whitespace between them: "no  heat" matches, "piano heater" does not.
    return re.compile(r"(?<![\w])" + r"\s+".join(re.escape(w) for w in words) + r"(?![\w])")


def _most_urgent(text: str, rules: Iterable[Rule]) -> lead_pb2.Urgency.ValueType | None:
    found: lead_pb2.Urgency.ValueType | None = None
    for rule in rules:
        if not rule.pattern.strip() or rule.urgency == lead_pb2.URGENCY_UNSPECIFIED:
            continue
        # Lower enum value = more urgent (EMERGENCY=1 ... LOW=4).
        if (found is None or rule.urgency < found) and _compiled(rule.pattern).search(text):
            found = rule.urgency
    return found


def classify(texts: Iterable[str], tenant_rules: Sequence[Rule] = ()) -> lead_pb2.Urgency.ValueType:
    """The tenant's rules first, then the defaults; medium when nothing matches."""
    text = " ".join(t for t in texts if t).lower()[:20_000]
    if not text:
        return DEFAULT
    for rules in (tenant_rules, default_rules()):
        found = _most_urgent(text, rules)
        if found is not None:
            return found
    return DEFAULT

"""The rule-based scorer: each rule moves intent and fit, and says why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leadflow_enrichment.providers.base import LeadView
from leadflow_enrichment.providers.local_scorer import KeywordRule, RuleScorer, ScoringRules


def lead(**fields: Any) -> LeadView:
    return LeadView(**{"tenant": "acme", "lead_id": "l1", "source": "meta", **fields})


def test_an_urgent_complete_lead_is_high_intent_and_fit() -> None:
    result = RuleScorer().score(
        lead(
            source="form",
            first_name="Ada",
            email="ada@example.com",
            phone_e164="+13055550123",
            postal_code="33101",
            urgency="emergency",
            message="Water heater burst, need someone ASAP, what does it cost?",
        )
    )
    assert result.intent == "high"
    assert result.fit_score >= 90
    assert result.model == "rules"
    assert not result.fallback
    assert any("urgent" in r for r in result.reasons)
    assert any("pricing" in r for r in result.reasons)
    assert any("has phone" in r for r in result.reasons)


def test_a_browsing_bare_lead_is_low() -> None:
    result = RuleScorer().score(lead(urgency="low", message="just looking, no rush"))
    assert result.intent == "low"
    assert result.fit_score < 30
    assert any("browsing" in r for r in result.reasons)


def test_completeness_raises_fit_alone() -> None:
    scorer = RuleScorer()
    bare = scorer.score(lead())
    full = scorer.score(lead(first_name="A", email="a@example.com", phone_e164="+13055550123"))
    assert full.fit_score - bare.fit_score == 35  # phone 15 + email 10 + name 10
    assert bare.intent == full.intent == "low"


def test_keywords_match_words_not_substrings() -> None:
    # "contest" contains "test" but is not the word; custom fields are read too.
    scorer = RuleScorer()
    result = scorer.score(lead(message="I won a contest", custom_fields={"timeline": "this week"}))
    assert not any("not a buyer" in r for r in result.reasons)
    assert any("soon" in r for r in result.reasons)


def test_fit_is_clamped_to_0_100() -> None:
    rules = ScoringRules(
        base_fit=90, keywords=[KeywordRule(pattern="gold", fit_points=500, intent_points=99)]
    )
    assert RuleScorer(rules).score(lead(message="gold")).fit_score == 100
    rules = ScoringRules(base_fit=0, keywords=[KeywordRule(pattern="spam", fit_points=-500)])
    assert RuleScorer(rules).score(lead(message="spam")).fit_score == 0


def test_rules_load_from_json(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(
        json.dumps(
            {"base_fit": 10, "keywords": [{"pattern": "solar", "intent_points": 40, "label": "solar"}]}
        )
    )
    result = RuleScorer(ScoringRules.from_file(path)).score(lead(message="Solar panels please"))
    assert result.intent == "high"
    assert result.reasons[0].startswith("keyword solar")

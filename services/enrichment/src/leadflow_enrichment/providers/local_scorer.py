"""The local scorer: intent and fit from explainable rules kept in data, no outside call."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, Field

from leadflow_enrichment.providers.base import Enrichment, LeadView


class KeywordRule(BaseModel):
    """Words in the lead's message (or custom fields) that move intent and fit."""

    pattern: str  # a case-insensitive regular expression, matched on word boundaries
    intent_points: int = 0
    fit_points: int = 0
    label: str = ""


class ScoringRules(BaseModel):
    """All the knobs of the rule-based scorer; load a tenant's or deployment's own from JSON."""

    base_fit: int = 40
    keywords: list[KeywordRule] = Field(
        default_factory=lambda: [
            KeywordRule(
                pattern=r"emergency|urgent|asap|right away|immediately",
                intent_points=30,
                fit_points=10,
                label="urgent",
            ),
            KeywordRule(pattern=r"today|tonight|this week", intent_points=15, fit_points=5, label="soon"),
            KeywordRule(
                pattern=r"quote|estimate|price|pricing|cost", intent_points=20, fit_points=10, label="pricing"
            ),
            KeywordRule(
                pattern=r"buy|purchase|hire|install|replace|book|schedule|appointment",
                intent_points=20,
                fit_points=10,
                label="ready to buy",
            ),
            KeywordRule(
                pattern=r"just looking|browsing|curious|someday|no rush",
                intent_points=-20,
                fit_points=-10,
                label="browsing",
            ),
            KeywordRule(
                pattern=r"test|spam|unsubscribe|wrong number|do not call",
                intent_points=-40,
                fit_points=-30,
                label="not a buyer",
            ),
        ]
    )
    # Points by lead source: referrals from a CRM convert better than cold ad clicks.
    source_points: dict[str, int] = Field(
        default_factory=lambda: {
            "salesforce": 10,
            "hubspot": 10,
            "api": 8,
            "form": 8,
            "marketo": 6,
            "zapier": 5,
            "google": 5,
            "meta": 0,
        }
    )
    # Points for each contact detail present: reachable, identifiable leads are worth more.
    completeness_points: dict[str, int] = Field(
        default_factory=lambda: {
            "phone": 15,
            "email": 10,
            "name": 10,
            "postal_code": 5,
            "state": 3,
            "message": 2,
        }
    )
    urgency_points: dict[str, int] = Field(
        default_factory=lambda: {"emergency": 25, "high": 12, "medium": 0, "low": -10}
    )
    # Intent from the summed intent points (keywords + urgency).
    high_intent_at: int = 30
    medium_intent_at: int = 5

    @classmethod
    def from_file(cls, path: str | Path) -> ScoringRules:
        return cls.model_validate(json.loads(Path(path).read_text()))


class RuleScorer:
    """Implements `Scorer`: deterministic, explainable, and fast enough to run inline."""

    name = "rules"

    def __init__(self, rules: ScoringRules | None = None) -> None:
        self.rules = rules or ScoringRules()
        self._compiled = [
            (re.compile(rf"\b(?:{rule.pattern})\b", re.IGNORECASE), rule) for rule in self.rules.keywords
        ]

    def score(self, lead: LeadView) -> Enrichment:
        rules = self.rules
        fit = rules.base_fit
        intent_points = 0
        reasons: list[str] = []

        text = " ".join([lead.message, *lead.custom_fields.values()])
        for regex, rule in self._compiled:
            if regex.search(text):
                fit += rule.fit_points
                intent_points += rule.intent_points
                label = rule.label or rule.pattern
                reasons.append(f"keyword {label}: intent {rule.intent_points:+d}, fit {rule.fit_points:+d}")

        source = rules.source_points.get(lead.source, 0)
        if source:
            fit += source
            reasons.append(f"source {lead.source}: fit {source:+d}")

        present = {
            "phone": bool(lead.phone_e164),
            "email": bool(lead.email),
            "name": bool(lead.first_name or lead.last_name),
            "postal_code": bool(lead.postal_code),
            "state": bool(lead.state),
            "message": bool(lead.message.strip()),
        }
        for detail, points in rules.completeness_points.items():
            if present.get(detail):
                fit += points
                reasons.append(f"has {detail}: fit {points:+d}")

        urgency = rules.urgency_points.get(lead.urgency, 0)
        if urgency:
            fit += urgency
            intent_points += urgency
            reasons.append(f"urgency {lead.urgency}: intent {urgency:+d}, fit {urgency:+d}")

        if intent_points >= rules.high_intent_at:
            intent = "high"
        elif intent_points >= rules.medium_intent_at:
            intent = "medium"
        else:
            intent = "low"
        return Enrichment(
            intent=intent,
            fit_score=max(0, min(100, fit)),
            reasons=tuple(reasons),
            model=self.name,
        )

"""A call's estimated cost from the tenant's rate card: per-minute price by the destination's
country and line type, else the card's default, times the minutes a call is expected to last."""

from __future__ import annotations

from decimal import Decimal

from leadflow.v1 import tenant_pb2
from leadflow_compliance.accounting import MICROS

# A tenant with no rate card still holds something against its budget: Twilio's US price.
DEFAULT_PER_MINUTE_USD = "0.0140"


def per_minute_usd(card: tenant_pb2.RateCard, country: str, line_type: str) -> str:
    """The most specific rate: country and line type, then the country's rate for any line type."""
    country = country.upper()
    for rate in card.rates:
        if rate.country.upper() == country and rate.line_type and rate.line_type == line_type:
            return rate.per_minute_usd
    for rate in card.rates:
        if rate.country.upper() == country and not rate.line_type:
            return rate.per_minute_usd
    return card.default_per_minute_usd or DEFAULT_PER_MINUTE_USD


def estimate_micros(card: tenant_pb2.RateCard, country: str, line_type: str) -> int:
    """Micro-dollars, rounded up: an estimate that errs holds too much, never too little."""
    minutes = card.estimate_minutes or 1
    price = Decimal(per_minute_usd(card, country, line_type)) * minutes * MICROS
    return int(price.to_integral_value(rounding="ROUND_CEILING"))

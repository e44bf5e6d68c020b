"""A Twilio status callback's price: money leaving the account is negative, in `PriceUnit`."""

from __future__ import annotations

from leadflow_gateway.sources.calls import to_request

BASE = [("CallSid", "CA" + "a" * 32), ("CallStatus", "completed"), ("CallDuration", "42")]


def test_a_dollar_price_is_kept_as_a_positive_amount() -> None:
    req = to_request("t", [*BASE, ("Price", "-0.01400"), ("PriceUnit", "USD")])
    assert req.price_usd == "0.01400"


def test_a_price_in_another_currency_is_not_taken_for_dollars() -> None:
    req = to_request("t", [*BASE, ("Price", "-0.01100"), ("PriceUnit", "EUR")])
    assert req.price_usd == ""


def test_no_price_yet_leaves_the_estimate_standing() -> None:
    assert to_request("t", BASE).price_usd == ""

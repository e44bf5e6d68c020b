"""Retry-After parsing and the classification of HTTP answers."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from leadflow_enrichment.failures import ErrorClass, ProviderError
from leadflow_enrichment.providers.http_errors import (
    MAX_RETRY_AFTER_SECONDS,
    check_base_url,
    classify_status,
    error_for_response,
    parse_retry_after,
)

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("Mon, 23 Nov 2026 12:00:30 GMT", 30.0),
        ("Mon, 23 Nov 2026 11:59:00 GMT", 0.0),  # already past: retry now
        ("999999", MAX_RETRY_AFTER_SECONDS),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_or_http_date(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=lambda: NOW) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, ErrorClass.RATE_LIMITED),
        (500, ErrorClass.TEMPORARY),
        (502, ErrorClass.TEMPORARY),
        (503, ErrorClass.TEMPORARY),
        (408, ErrorClass.TEMPORARY),
        (400, ErrorClass.VALIDATION),
        (422, ErrorClass.VALIDATION),
        (401, ErrorClass.EXTERNAL),
        (403, ErrorClass.EXTERNAL),
        (402, ErrorClass.EXTERNAL),
    ],
)
def test_status_classes(status: int, expected: ErrorClass) -> None:
    assert classify_status(status) is expected


def test_503_with_retry_after_waits_like_a_429() -> None:
    response = httpx.Response(503, headers={"Retry-After": "12"})
    error = error_for_response(response, "crm")
    assert error.error_class is ErrorClass.RATE_LIMITED
    assert error.retry_after == 12.0
    assert error.status == 503


def test_credentials_only_over_tls_except_loopback() -> None:
    assert check_base_url("https://api.example.com/", "x") == "https://api.example.com"
    assert check_base_url("http://127.0.0.1:8123", "x") == "http://127.0.0.1:8123"
    with pytest.raises(ProviderError) as err:
        check_base_url("http://api.example.com", "x")
    assert err.value.error_class is ErrorClass.EXTERNAL

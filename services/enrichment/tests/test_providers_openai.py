"""The OpenAI-compatible scorer against the fake: strict JSON, bounded prompts, classified failures."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from leadflow_enrichment.failures import ErrorClass, ProviderError
from leadflow_enrichment.providers.base import LeadView
from leadflow_enrichment.providers.openai_scorer import OpenAiScorer
from tests.fakes.openai import OpenAiFake

LEAD = LeadView(
    tenant="acme",
    lead_id="lead-7",
    source="meta",
    first_name="Grace",
    last_name="Hopper",
    email="grace@example.com",
    phone_e164="+13055550199",
    urgency="high",
    message="Please call me at 305-555-0199 or grace@example.com, my AC is broken",
)


@pytest.fixture
def llm() -> Iterator[OpenAiFake]:
    with OpenAiFake(api_key="sk-test") as fake:
        yield fake


def scorer(
    fake: OpenAiFake, *, key: str = "sk-test", timeout: float = 5.0, max_prompt_chars: int = 4000
) -> OpenAiScorer:
    return OpenAiScorer(
        api_key=key,
        base_url=fake.url,
        model="small-model",
        max_tokens=123,
        max_prompt_chars=max_prompt_chars,
        timeout=timeout,
    )


def test_scores_from_strict_json(llm: OpenAiFake) -> None:
    client = scorer(llm)
    result = client.score(LEAD)
    assert (result.intent, result.fit_score, result.fallback) == ("high", 77, False)
    assert result.model == "openai:small-model"
    body = llm.requests_to("/v1/chat/completions")[0].json()
    assert body["max_tokens"] == 123
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    prompt = json.dumps(body["messages"])
    # No PII goes to the model: no name, phone or email in clear.
    for secret in ("Grace", "Hopper", "grace@example.com", "305-555-0199", "+13055550199"):
        assert secret not in prompt
    client.close()


def test_prompt_is_capped(llm: OpenAiFake) -> None:
    client = scorer(llm, max_prompt_chars=300)
    client.score(LeadView(tenant="acme", lead_id="x", source="form", message="words " * 5000))
    body = llm.requests_to("/v1/chat/completions")[0].json()
    assert len(body["messages"][1]["content"]) <= 300
    client.close()


@pytest.mark.parametrize(
    ("content", "finish"),
    [
        ("Sure! intent is high", "stop"),
        ('{"intent": "urgent", "fit_score": 50, "reasons": []}', "stop"),
        ('{"intent": "high", "fit_score": 500, "reasons": []}', "stop"),
        ('{"intent": "high", "fit_score": "90", "reasons": []}', "stop"),
        ('{"intent": "high", "fit_score": 90, "reasons": [], "extra": 1}', "stop"),
        ('{"intent": "high", "fit_sc', "length"),
    ],
)
def test_malformed_output_is_a_provider_error(llm: OpenAiFake, content: str, finish: str) -> None:
    llm.malformed(content=content, finish_reason=finish)
    client = scorer(llm)
    with pytest.raises(ProviderError) as err:
        client.score(LEAD)
    assert err.value.error_class is ErrorClass.EXTERNAL
    assert "malformed" in str(err.value)
    assert client.score(LEAD).fit_score == 77  # only that one answer was bad
    client.close()


def test_timeout_is_temporary(llm: OpenAiFake) -> None:
    llm.stall(seconds=5)
    client = scorer(llm, timeout=0.3)
    with pytest.raises(ProviderError) as err:
        client.score(LEAD)
    assert err.value.error_class is ErrorClass.TEMPORARY
    client.close()


def test_rate_limit_and_server_errors(llm: OpenAiFake) -> None:
    llm.fail(status=429, headers={"Retry-After": "20"})
    llm.fail(status=500)
    client = scorer(llm)
    with pytest.raises(ProviderError) as err:
        client.score(LEAD)
    assert (err.value.error_class, err.value.retry_after) == (ErrorClass.RATE_LIMITED, 20.0)
    with pytest.raises(ProviderError) as err:
        client.score(LEAD)
    assert err.value.error_class is ErrorClass.TEMPORARY
    client.close()


def test_bad_key_is_external(llm: OpenAiFake) -> None:
    client = scorer(llm, key="sk-wrong")
    with pytest.raises(ProviderError) as err:
        client.score(LEAD)
    assert err.value.error_class is ErrorClass.EXTERNAL
    client.close()


def test_rate_limit_reset_headers_when_no_retry_after(llm: OpenAiFake) -> None:
    llm.fail(status=429, headers={"x-ratelimit-reset-requests": "1m30s", "x-ratelimit-reset-tokens": "250ms"})
    client = scorer(llm)
    with pytest.raises(ProviderError) as err:
        client.score(LEAD)
    assert err.value.error_class is ErrorClass.RATE_LIMITED
    assert err.value.retry_after == 90.0
    client.close()

"""The Twilio client against the Twilio fake, and the signature algorithm on Twilio's own example."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest

from leadflow_core.testing import wait_for
from leadflow_enrichment.failures import ErrorClass, ProviderError
from leadflow_enrichment.providers.base import CallRequest
from leadflow_enrichment.providers.twilio import TwilioDialer, with_attempt
from leadflow_enrichment.providers.twilio_signature import signature_matches, twilio_signature
from tests.fakes.http_server import RecordingServer
from tests.fakes.twilio import TwilioFake

ACCOUNT = "AC" + "1" * 32
TOKEN = "twilio-test-token"


def test_signature_matches_twilios_documented_example() -> None:
    # Twilio's request-validation docs: token 12345, this URL and these parameters.
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert signature_matches("12345", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not signature_matches("12345", url, {**params, "Digits": "1235"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


@pytest.fixture
def twilio() -> Iterator[TwilioFake]:
    with TwilioFake(ACCOUNT, TOKEN) as fake:
        yield fake


def dialer(fake: TwilioFake, timeout: float = 5.0, token: str = TOKEN) -> TwilioDialer:
    return TwilioDialer(
        account_sid=ACCOUNT, auth_token=token, from_number="+15005550006", base_url=fake.url, timeout=timeout
    )


def request(callback: str, attempt: str = "att-1", to: str = "+13055550123") -> CallRequest:
    return CallRequest(
        attempt_id=attempt,
        tenant="acme",
        lead_id="lead-1",
        to_e164=to,
        from_number="",
        status_callback_url=callback,
    )


def test_place_call_speaks_twilios_format(twilio: TwilioFake, receiver: RecordingServer) -> None:
    client = dialer(twilio)
    callback = receiver.url + "/v1/calls/acme/status"
    handle = client.place_call(request(callback))
    assert handle.provider_call_id.startswith("CA")
    assert handle.status == "queued"

    (sent,) = twilio.requests_to("/Calls.json", "POST")
    assert sent.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    # Twilio documents no idempotency key for Calls: none is sent, none would help.
    assert "idempotency-key" not in sent.headers
    form = sent.form()
    assert form["To"] == ["+13055550123"]
    assert form["From"] == ["+15005550006"]
    assert form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert "Twiml" in form
    # The attempt id travels in the callback URL, so a callback finds its attempt.
    assert parse_qs(urlsplit(form["StatusCallback"][0]).query)["attempt_id"] == ["att-1"]
    client.close()


def test_every_create_is_a_new_call_as_at_twilio(twilio: TwilioFake) -> None:
    """The fake is honest: a repeated create for one attempt rings the person twice. Only our
    own records (reconciliation before a re-dial) may prevent that, never the provider."""
    client = dialer(twilio)
    first = client.place_call(request(""))
    again = client.place_call(request(""))
    assert first.provider_call_id != again.provider_call_id
    assert len(twilio.calls_to("+13055550123")) == 2
    client.close()


@pytest.mark.parametrize("mode", ["500", "timeout", "drop"])
def test_faults_after_create_are_ambiguous_and_the_call_exists(twilio: TwilioFake, mode: str) -> None:
    twilio.fail_after_create(mode)
    client = dialer(twilio, timeout=0.5)
    with pytest.raises(ProviderError) as err:
        client.place_call(request(""))
    assert err.value.ambiguous
    assert err.value.error_class is ErrorClass.TEMPORARY
    (call,) = twilio.calls_to("+13055550123")
    # The lookup finds it: To, From and a lower bound on its creation.
    found = client.find_calls("+13055550123", "", call.date_created - timedelta(seconds=1))
    assert [c.provider_call_id for c in found] == [call.sid]
    client.close()


def test_refusals_are_not_ambiguous(twilio: TwilioFake) -> None:
    twilio.fail(times=1, status=429)
    client = dialer(twilio)
    with pytest.raises(ProviderError) as err:
        client.place_call(request(""))
    assert not err.value.ambiguous
    with pytest.raises(ProviderError) as err:
        client.place_call(request("", to="+1"))
    assert not err.value.ambiguous
    assert twilio.calls_to("+13055550123") == []
    client.close()


def test_find_calls_reads_the_calls_list_as_twilio_documents(twilio: TwilioFake) -> None:
    client = dialer(twilio)
    before = datetime.now(UTC) - timedelta(seconds=1)
    sids = [client.place_call(request("", attempt=f"a{i}")).provider_call_id for i in range(3)]
    client.place_call(request("", to="+13055550999"))  # another number: never listed
    twilio.progress(sids[0], "ringing")  # started: found by StartTime>; the others are queued
    found = client.find_calls("+13055550123", "", before)
    assert sorted(c.provider_call_id for c in found) == sorted(sids)
    lists = twilio.requests_to("/Calls.json", "GET")
    queries = [{k: v[0] for k, v in r.query.items()} for r in lists]
    assert {q.get("Status") for q in queries} == {"queued", None}
    started = next(q for q in queries if "StartTime>" in q)
    assert started["StartTime>"] == before.date().isoformat()
    assert started["To"] == "+13055550123"
    assert started["From"] == "+15005550006"
    # Calls created before the bound are not this attempt's.
    assert client.find_calls("+13055550123", "", datetime.now(UTC) + timedelta(seconds=5)) == []
    client.close()


def test_find_calls_follows_next_page_uri(twilio: TwilioFake) -> None:
    client = dialer(twilio)
    before = datetime.now(UTC) - timedelta(seconds=1)
    sids = {client.place_call(request("", attempt=f"p{i}")).provider_call_id for i in range(5)}
    # Page size 2: the client must follow Twilio's next_page_uri to see every call.
    with mock.patch("leadflow_enrichment.providers.twilio.LIST_PAGE_SIZE", 2):
        found = client.find_calls("+13055550123", "", before)
    assert {c.provider_call_id for c in found} == sids
    pages = [r.query.get("Page", ["0"])[0] for r in twilio.requests_to("/Calls.json", "GET")]
    assert "2" in pages
    client.close()


def test_find_calls_fails_loudly_when_the_list_fails(twilio: TwilioFake) -> None:
    client = dialer(twilio)
    twilio.fail(times=1, status=500, method="GET")
    with pytest.raises(ProviderError):
        client.find_calls("+13055550123", "", datetime.now(UTC))
    client.close()


def test_the_fake_keeps_twilios_status_order(twilio: TwilioFake) -> None:
    client = dialer(twilio)
    sid = client.place_call(request("")).provider_call_id
    twilio.play(sid, "busy")
    assert twilio.calls[sid].status == "busy"
    with pytest.raises(ValueError, match="does not go from busy"):
        twilio.progress(sid, "ringing")  # an ended call does not ring again
    client.close()


def test_callbacks_are_signed_and_fetch_status_reconciles(
    twilio: TwilioFake, receiver: RecordingServer
) -> None:
    client = dialer(twilio)
    callback = receiver.url + "/v1/calls/acme/status"
    sid = client.place_call(request(callback)).provider_call_id
    for step in ("ringing", "in-progress", "completed"):
        assert twilio.progress(sid, step, duration=61) == 204
    received = receiver.requests_to("/v1/calls/acme/status", "POST")
    assert [r.form()["CallStatus"][0] for r in received] == ["ringing", "in-progress", "completed"]
    last = received[-1]
    params = {k: v[0] for k, v in last.form().items()}
    full_url = with_attempt(callback, "att-1")
    assert signature_matches(TOKEN, full_url, params, last.headers["x-twilio-signature"])
    assert params["CallDuration"] == "61"

    status = client.fetch_status(sid)
    assert status.status == "completed"
    assert status.duration_seconds == 61
    assert status.price_usd == "0.02800"  # Twilio's "-0.02800", as a cost
    client.close()


def test_auto_progress_sends_callbacks_on_its_own(receiver: RecordingServer) -> None:
    with TwilioFake(ACCOUNT, TOKEN, auto_progress=["ringing", "in-progress", "completed"]) as fake:
        client = dialer(fake)
        client.place_call(request(receiver.url + "/cb"))
        wait_for(lambda: len(receiver.requests_to("/cb")) == 3, timeout=10, what="three callbacks")
        client.close()


def test_rate_limited_carries_retry_after(twilio: TwilioFake) -> None:
    twilio.fail(times=1, status=429, headers={"Retry-After": "7"})
    client = dialer(twilio)
    with pytest.raises(ProviderError) as err:
        client.place_call(request(""))
    assert err.value.error_class is ErrorClass.RATE_LIMITED
    assert err.value.retry_after == 7.0
    # The next request goes through: the fault was for one request only.
    assert client.place_call(request("")).status == "queued"
    client.close()


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_temporary(twilio: TwilioFake, status: int) -> None:
    twilio.fail(times=1, status=status)
    client = dialer(twilio)
    with pytest.raises(ProviderError) as err:
        client.place_call(request(""))
    assert err.value.error_class is ErrorClass.TEMPORARY
    assert err.value.status == status
    client.close()


def test_timeout_is_temporary(twilio: TwilioFake) -> None:
    twilio.stall(times=1, seconds=5)
    client = dialer(twilio, timeout=0.3)
    with pytest.raises(ProviderError) as err:
        client.fetch_status("CA" + "0" * 32)
    assert err.value.error_class is ErrorClass.TEMPORARY
    client.close()


def test_invalid_number_is_a_validation_error(twilio: TwilioFake) -> None:
    client = dialer(twilio)
    with pytest.raises(ProviderError) as err:
        client.place_call(request("", to="+1"))
    assert err.value.error_class is ErrorClass.VALIDATION
    assert err.value.status == 400
    assert "+1" not in str(err.value).replace("21211", "")  # the code, never the number
    client.close()


def test_bad_credentials_are_external(twilio: TwilioFake) -> None:
    client = dialer(twilio, token="wrong")
    with pytest.raises(ProviderError) as err:
        client.place_call(request(""))
    assert err.value.error_class is ErrorClass.EXTERNAL
    assert err.value.status == 401
    client.close()


def test_unknown_call_is_a_validation_error(twilio: TwilioFake) -> None:
    client = dialer(twilio)
    with pytest.raises(ProviderError) as err:
        client.fetch_status("CA" + "f" * 32)
    assert err.value.error_class is ErrorClass.VALIDATION
    assert err.value.status == 404
    client.close()


def test_recorded_calls_announce_the_recording(twilio: TwilioFake) -> None:
    client = dialer(twilio)
    client.place_call(
        CallRequest("rec-1", "acme", "l", "+13055550123", "", "", record=True, recording_disclosure=True)
    )
    form = twilio.requests_to("/Calls.json", "POST")[0].form()
    assert form["Record"] == ["true"]
    assert form["Twiml"][0].startswith("<Response><Say>This call may be recorded.</Say>")
    with pytest.raises(ProviderError) as err:
        client.fetch_status("../../Accounts")
    assert err.value.error_class is ErrorClass.VALIDATION
    client.close()


def test_recording_only_when_compliance_allows_and_the_announcement_is_ours(twilio: TwilioFake) -> None:
    client = dialer(twilio)
    client.place_call(CallRequest("rec-2", "acme", "l", "+13055550123", "", "", record=False))
    hosted = TwilioDialer(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        from_number="+15005550006",
        base_url=twilio.url,
        twiml_url="https://acme.example/twiml",
    )
    # The tenant's own TwiML is not known to announce: no recording where an announcement is required.
    hosted.place_call(
        CallRequest("rec-3", "acme", "l", "+13055550123", "", "", record=True, recording_disclosure=True)
    )
    hosted.place_call(
        CallRequest("rec-4", "acme", "l", "+12125550123", "", "", record=True, recording_disclosure=False)
    )
    forms = [r.form() for r in twilio.requests_to("/Calls.json", "POST")]
    assert ["Record" in f for f in forms] == [False, False, True]
    client.close()
    hosted.close()


def test_logs_never_carry_the_number(twilio: TwilioFake) -> None:
    from structlog.testing import capture_logs

    client = dialer(twilio)
    with capture_logs() as logs:
        client.place_call(request("", attempt="pii-1", to="+13055550177"))
    assert logs
    assert "3055550177" not in repr(logs)
    assert any(entry.get("to") == "+1******0177" for entry in logs)
    client.close()

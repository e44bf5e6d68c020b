"""Event signing and the retry schedule of events out (the mesh test covers delivery itself)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leadflow_dispatcher.event_delivery import retry_at, sign
from leadflow_dispatcher.settings import DispatcherSettings
from leadflow_gateway.signatures import verify_standard_webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_the_signature_is_standard_webhooks_v1() -> None:
    # The Standard Webhooks specification's example message, id and timestamp.
    body = b'{"test": 2432232314}'
    signature = sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330"}
    assert verify_standard_webhook(
        [SECRET], {**headers, "webhook-signature": signature}, body, 1614265330, 300
    )


def test_retries_back_off_doubling_up_to_the_cap_then_stop() -> None:
    settings = DispatcherSettings(
        event_max_attempts=6, event_min_backoff_seconds=5, event_max_backoff_seconds=30
    )
    now = datetime(2026, 12, 1, tzinfo=UTC)
    delays = [retry_at(n, settings, now) for n in range(1, 7)]
    assert delays[:5] == [now + timedelta(seconds=s) for s in (5, 10, 20, 30, 30)]
    assert delays[5] is None

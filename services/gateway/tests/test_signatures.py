"""Each sender's signature scheme against the vendors' documented examples."""

from __future__ import annotations

import base64
import hashlib
import hmac

from leadflow_gateway import signatures


def test_standard_webhooks_documented_example() -> None:
    # The example of the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert (
        signatures.standard_webhook_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body)
        == expected
    )
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": f"v1,bm90LXRoaXMtb25l {expected}",
    }
    assert signatures.verify_standard_webhook([secret], headers, body, 1614265330 + 10, 300)
    # Outside the 5-minute window, or with another key only, or a changed body: refused.
    assert not signatures.verify_standard_webhook([secret], headers, body, 1614265330 + 301, 300)
    assert not signatures.verify_standard_webhook(["whsec_b3RoZXI="], headers, body, 1614265330, 300)
    assert not signatures.verify_standard_webhook([secret], headers, body + b" ", 1614265330, 300)
    # Key rotation: old and new secrets both accepted.
    assert signatures.verify_standard_webhook(["whsec_b3RoZXI=", secret], headers, body, 1614265330, 300)


def test_twilio_documented_example() -> None:
    # Twilio's security documentation example (auth token 12345).
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert signatures.twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert signatures.verify_twilio("12345", url, list(reversed(params)), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not signatures.verify_twilio("12345", url + "&x=1", params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not signatures.verify_twilio("12345", url, params, None)


def test_meta_signature_is_over_raw_bytes() -> None:
    # Meta escapes non-ASCII (\u00e9); re-serialising would change the bytes and the signature.
    raw = b'{"object":"page","entry":[{"id":"1","changes":[{"value":{"name":"Ren\\u00e9e"}}]}]}'
    sig = "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
    assert signatures.verify_meta("s3cret", raw, sig)
    assert signatures.verify_meta("s3cret", raw, sig.upper().replace("SHA256=", "sha256="))
    reserialised = raw.decode("unicode_escape").encode()
    assert not signatures.verify_meta("s3cret", reserialised, sig)
    assert not signatures.verify_meta("other", raw, sig)
    assert not signatures.verify_meta("s3cret", raw, None)
    assert not signatures.verify_meta("", raw, sig)


def test_hubspot_v3_as_documented() -> None:
    secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
    uri = "https://www.example.com/webhook_uri?foo=b%3Ar"
    body = b'[{"eventId":1,"objectId":123}]'
    ts = "1700000000000"
    # HubSpot signs the URI with %3A decoded.
    message = b"POST" + b"https://www.example.com/webhook_uri?foo=b:r" + body + ts.encode()
    expected = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()
    assert signatures.hubspot_v3_signature(secret, "POST", uri, body, ts) == expected
    now = 1700000000000 + 299_000
    assert signatures.verify_hubspot_v3(secret, "POST", uri, body, ts, expected, now, 300_000)
    assert not signatures.verify_hubspot_v3(secret, "POST", uri, body, ts, expected, now + 2000, 300_000)
    assert not signatures.verify_hubspot_v3(secret, "POST", uri, body, "1.7e12", expected, now, 300_000)
    assert not signatures.verify_hubspot_v3(secret, "GET", uri, body, ts, expected, now, 300_000)


def test_hubspot_legacy_versions() -> None:
    secret, body = "secret", b'{"a":1}'
    v1 = hashlib.sha256(b"secret" + body).hexdigest()
    v2 = hashlib.sha256(b"secretPOSThttps://x.test/h" + body).hexdigest()
    assert signatures.verify_hubspot_legacy(secret, "v1", "POST", "https://x.test/h", body, v1)
    assert signatures.verify_hubspot_legacy(secret, "v2", "POST", "https://x.test/h", body, v2)
    assert not signatures.verify_hubspot_legacy(secret, "v2", "POST", "https://x.test/h", body, v1)
    assert not signatures.verify_hubspot_legacy(secret, "v9", "POST", "https://x.test/h", body, v1)


def test_shared_secret() -> None:
    assert signatures.shared_secret_matches("abc", " abc ")
    assert not signatures.shared_secret_matches("abc", "abd")
    assert not signatures.shared_secret_matches("", "")
    assert not signatures.shared_secret_matches("abc", None)

"""No phone number or email reaches a log in clear."""

from __future__ import annotations

import io
import json
import logging

from hypothesis import given
from hypothesis import strategies as st

from leadflow_core import logs
from leadflow_core.pii import mask_email, mask_phone, scrub, scrub_patterns, subject_hash
from leadflow_core.request_context import bound


def test_masks_keep_only_what_a_person_needs() -> None:
    assert mask_phone("+13055550123") == "+1******0123"
    assert mask_email("ada@example.com") == "a***@example.com"


def test_scrub_masks_phones_and_emails_in_free_text_but_not_short_numbers() -> None:
    text = "call (305) 555-0123 or +1 212 555 0143, mail Ada.L@Example.com; order 12345 on 2026-11-23"
    out = scrub(text)
    assert "555-0123" not in out
    assert "212 555 0143" not in out
    assert "Ada.L@Example.com" not in out
    assert "12345" in out
    assert "2026-11-23" in out


@given(st.from_regex(r"\+1[2-9]\d{2}[2-9]\d{6}", fullmatch=True))
def test_scrub_never_lets_an_e164_number_through(number: str) -> None:
    assert number not in scrub(f"dialing {number} now")


# Arabic-Indic and superscript digits too: the patterns mask on the way to a log, so other
# scripts' digits count as digits (and superscripts, which `\d` does not match, do not).
@given(st.text(alphabet="0123456789\u0660\u0661\u0663\u0665\u00b2\u00b3 +-().@abcxyzT:Z/_", max_size=40))
def test_the_shortcut_masks_exactly_what_the_patterns_mask(text: str) -> None:
    assert scrub(text) == scrub_patterns(text)


def test_a_number_in_other_digits_is_masked_too() -> None:
    arabic_indic = "".join(chr(0x0660 + int(d)) for d in "3055550123")
    out = scrub(f"call {arabic_indic} now")
    assert arabic_indic not in out
    assert out.endswith(arabic_indic[-4:] + " now")


def test_subject_hash_is_keyed_and_stable() -> None:
    a = subject_hash("+13055550123", "k1")
    assert a == subject_hash(" +13055550123 ", "k1")
    assert a != subject_hash("+13055550123", "k2")


def _captured() -> io.StringIO:
    """The configured root handler's stream, swapped for one the test reads."""
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream


def test_json_logs_carry_the_request_id_and_no_pii() -> None:
    logs.configure("test")
    stream = _captured()
    with bound("req-123", tenant="acme"):
        logs.get_logger("t").info("lead_received", phone="+13055550123", note="from ada@example.com")
        logging.getLogger("thirdparty").warning("raw %s", "+12125550143")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["request_id"] == "req-123"
    assert lines[0]["tenant"] == "acme"
    assert lines[0]["event"] == "lead_received"
    dumped = stream.getvalue()
    for secret in ("+13055550123", "ada@example.com", "+12125550143"):
        assert secret not in dumped


def test_ids_and_timestamps_stay_readable() -> None:
    ids = (
        "lead 1f2e3d4c5b6a7988112233445566778a at 2026-11-23T10:00:00+00:00 attempt 12345678-abcd"
        " now 2026-11-24T16:00:07.907885+00:00 then tel:+13055550123"
    )
    assert scrub(ids) == ids.replace("+13055550123", "+1******0123")
    ids = ids.split(" then")[0]
    assert scrub(ids) == ids


def test_httpx_request_lines_are_left_out_its_warnings_kept() -> None:
    logs.configure("test", "info")
    stream = _captured()
    logging.getLogger("httpx").info('HTTP Request: POST http://crm/v3 "HTTP/1.1 200 OK"')
    logging.getLogger("httpx").warning("retrying")
    logs.get_logger("t").info("crm_synced")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["retrying", "crm_synced"]


def test_own_events_share_the_handler_stream_keep_their_level_and_render_errors() -> None:
    logs.configure("test", "info")
    stream = _captured()
    log = logs.get_logger("leadflow.t")
    log.debug("too_quiet", phone="+13055550123")
    logging.getLogger("thirdparty").info("between")
    try:
        raise ValueError("call +13055550123 failed")
    except ValueError:
        log.exception("crm_failed", attempt=2)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["between", "crm_failed"]
    failed = lines[1]
    assert (failed["level"], failed["logger"], failed["service"], failed["attempt"]) == (
        "error",
        "leadflow.t",
        "test",
        2,
    )
    assert "ValueError: call +1******0123 failed" in failed["exception"]
    assert "+13055550123" not in stream.getvalue()

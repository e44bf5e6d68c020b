"""The revocation rule (opt_out.py): keywords as a whole reply, opt-out phrases anywhere."""

from __future__ import annotations

import pytest

from leadflow_compliance.opt_out import match_disposition, match_reply


@pytest.mark.parametrize(
    "text",
    ["STOP", "stop", " Stop. ", "STOP!!!", "quit", "End", "REVOKE", "opt out", "Opt-Out", "OPTOUT",
     "cancel", "Unsubscribe", "stop please", "Please STOP", "cancel, thanks", "Stop it"],
)  # fmt: skip
def test_a_whole_reply_keyword_always_revokes(text: str) -> None:
    assert match_reply(text) == "keyword"


def test_full_width_letters_are_the_same_keyword() -> None:
    assert match_reply("\uff53\uff54\uff4f\uff50") == "keyword"  # "stop" in full-width letters


@pytest.mark.parametrize(
    "text",
    [
        "Stop calling me after 5pm",
        "please don't call me again",
        "Dont text this number",
        "Remove me from your list",
        "take me off your list please",
        "I want to unsubscribe from all of this",
        "No more calls!",
        "I revoke my consent",
        "I withdraw consent to be contacted",
        "Please put me on your do not call list",
        "stop texting me",
        "Never call me again.",
    ],
)
def test_a_reasonable_means_phrase_anywhere_revokes(text: str) -> None:
    assert match_reply(text) == "phrase"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Yes, call me tomorrow",
        "The end of the month works",
        "I want to cancel my old plan and switch to you",
        "Can you stop by on Friday?",
        "What time does the offer end?",
        "Sounds good, thanks",
        "stopwatch",
    ],
)
def test_ordinary_replies_do_not_revoke(text: str) -> None:
    assert match_reply(text) == ""


@pytest.mark.parametrize(
    ("code", "expected"),
    [("do_not_call", "disposition"), ("DNC", "disposition"), ("Do Not Call", "disposition"),
     ("opt-out", "disposition"), ("customer said stop calling", "phrase"), ("callback", ""),
     ("no_answer", ""), ("sale", "")],
)  # fmt: skip
def test_dispositions(code: str, expected: str) -> None:
    assert match_disposition(code) == expected

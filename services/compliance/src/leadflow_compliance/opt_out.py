"""Is this reply, transcript or disposition a revocation of consent? Pure: text in, verdict out.

The rule (FCC 24-18; 47 CFR 64.1200(a)(10) as amended):

1. **Keyword**: the whole reply, once case, punctuation and spacing are ignored, is one of the
   words the FCC lists as revocation per se — stop, quit, end, revoke, opt out, cancel,
   unsubscribe — optionally with a few courtesy words around it ("Stop please", "STOP!!!",
   "cancel, thanks"). Always revokes.
2. **Phrase** ("any reasonable means"): the reply contains an opt-out phrase anywhere — "stop
   calling", "don't call", "remove me", "unsubscribe", "take me off your list", ... A condition
   attached to it ("Stop calling me after 5pm") does not make it less of a revocation: the caller
   cannot honour a partial request safely, so the whole consent goes.

Bare keywords inside longer text are *not* revocations ("the end of the month works", "I want to
cancel my old plan and switch"): the FCC's per-se rule is about a keyword as the whole reply, and
treating every "end" as an opt-out would discard consent the person plainly still gives. A phrase
must name the contact itself (calling, texting, emailing, the list, "me").
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

Match = Literal["keyword", "phrase", "disposition", ""]

# 47 CFR 64.1200(a)(10) as amended by FCC 24-18.
KEYWORDS = frozenset({"stop", "quit", "end", "revoke", "opt out", "optout", "cancel", "unsubscribe"})
# Carrier vocabulary for the same request (CTIA short-code guidelines).
CARRIER_KEYWORDS = frozenset({"stopall", "stop all", "opt me out"})
COURTESY = frozenset({"please", "pls", "plz", "now", "thanks", "thank", "you", "thx", "it", "all", "me"})

_CONTACT = r"(?:call(?:ing|s)?|text(?:ing|s)?|messag(?:e|es|ing)|e?mail(?:ing|s)?|contact(?:ing)?|sms)"
_PHRASES = (
    rf"\bstop\s+{_CONTACT}\b",
    rf"\bquit\s+{_CONTACT}\b",
    rf"\b(?:do\s+not|dont|don\s+t|never)\s+(?:ever\s+)?{_CONTACT}\b",
    rf"\bno\s+more\s+{_CONTACT}\b",
    r"\bremove\s+(?:me|my\s+(?:number|name|email|info))\b",
    r"\btake\s+me\s+off\b",
    r"\bput\s+me\s+on\s+(?:your|the)\s+(?:do\s+not\s+call|dnc)\b",
    r"\bunsubscribe\b",
    r"\bopt\s*(?:me\s+)?out\b",
    r"\brevoke\b",
    r"\bwithdraw\s+(?:my\s+)?consent\b",
    r"\bleave\s+me\s+alone\b",
    r"\bdo\s+not\s+call\s+list\b",
)
_PHRASE = re.compile("|".join(_PHRASES))
_NOT_WORD = re.compile(r"[^a-z0-9]+")

# Dispositions an agent or IVR reports for a do-not-call request (and what dialers call them).
DNC_DISPOSITIONS = frozenset(
    {"do_not_call", "dnc", "opt_out", "optout", "revoke", "revoked", "unsubscribe", "stop", "remove"}
)


def normalise(text: str) -> str:
    """Case-folded, compatibility-normalised words separated by single spaces; apostrophes dropped
    so "don't" and "dont" are one word."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("'", "").replace("\u2019", "")
    return _NOT_WORD.sub(" ", folded).strip()


def match_reply(text: str) -> Match:
    """ "keyword", "phrase" or "" for a text or email reply, or words heard in a call."""
    words = normalise(text)
    if not words:
        return ""
    if _is_keyword_reply(words):
        return "keyword"
    if _PHRASE.search(words):
        return "phrase"
    return ""


def _is_keyword_reply(words: str) -> bool:
    if words in KEYWORDS or words in CARRIER_KEYWORDS:
        return True
    # "stop please", "STOP. Thanks", "please unsubscribe me": one keyword, only courtesy around it.
    parts = words.split(" ")
    core = [p for p in parts if p not in COURTESY]
    joined = " ".join(core)
    return bool(core) and len(parts) <= 5 and (joined in KEYWORDS or joined in CARRIER_KEYWORDS)


def match_disposition(code: str) -> Match:
    """A call disposition: a do-not-call code, or free words typed by the agent."""
    key = normalise(code).replace(" ", "_")
    if key in DNC_DISPOSITIONS:
        return "disposition"
    return match_reply(code)


def is_opt_out(text: str) -> bool:
    return match_reply(text) != ""

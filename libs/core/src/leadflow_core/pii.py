"""Masking and hashing of phone numbers and emails: none ever reaches a log in clear."""

from __future__ import annotations

import hashlib
import hmac
import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# Seven or more digits, optionally with +, spaces, dots, dashes or brackets between them, not
# glued to letters (ids, hashes) and not an ISO date.
_PHONE = re.compile(r"(?<![\w/\-])\+?\(?\d[\d\s().\-]{5,}\d(?![\w\-])")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# ISO timestamps are kept whole: their digit runs look like phone numbers.
_ISO_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")


# What any masking needs: an "@" (an email) or seven digits (a phone-length run). Most log
# values (ids, states, names) have neither and are returned without running the patterns.
# These patterns mask text on its way to a log, they validate nothing: `\d` is left Unicode on
# purpose, so a number written in another script's digits (Arabic-Indic, say) is masked too, and the
# shortcut counts the same digits `_PHONE` matches.
_SEVEN_DIGITS = re.compile(r"\d(?:\D*\d){6}")


def subject_hash(value: str, key: str) -> str:
    """Stable keyed hash of a phone or email, for correlating without revealing it."""
    digest = hmac.new(key.encode(), value.strip().lower().encode(), hashlib.sha256).hexdigest()
    return digest[:16]


def mask_phone(e164: str) -> str:
    """+13055550123 -> +1******0123."""
    if len(e164) <= 4:
        return "*" * len(e164)
    head = 2 if e164.startswith("+") else 0
    return e164[:head] + "*" * (len(e164) - head - 4) + e164[-4:]


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return (local[:1] + "***@" + domain) if domain else "***"


def _mask_phone_match(m: re.Match[str]) -> str:
    if _ISO_DATE.match(m.group(0)):
        return m.group(0)
    digits = sum(c.isdigit() for c in m.group(0))
    # Short runs (dates, amounts) are left alone; anything phone-length is masked.
    return mask_phone(m.group(0)) if digits >= 7 else m.group(0)


def scrub(text: str) -> str:
    """Mask every email and phone-like digit run in free text."""
    if "@" not in text and _SEVEN_DIGITS.search(text) is None:
        return text
    return scrub_patterns(text)


def scrub_patterns(text: str) -> str:
    """`scrub` without its shortcut: every pattern run over the text."""
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    out: list[str] = []
    last = 0
    for ts in _ISO_TIMESTAMP.finditer(text):
        out.append(_PHONE.sub(_mask_phone_match, text[last : ts.start()]))
        out.append(ts.group(0))
        last = ts.end()
    out.append(_PHONE.sub(_mask_phone_match, text[last:]))
    return "".join(out)

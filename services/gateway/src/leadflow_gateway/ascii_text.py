"""What counts as a digit, an id or a header value: ASCII only, whatever Unicode calls a digit.

`str.isdigit()`, `int()` and an unflagged `\\d` accept "²" and "٣"; here only 0-9 are digits,
so "²" is refused with a 400 naming the field instead of reaching `int()` (a 500) or the
database (NUL is refused by PostgreSQL text columns, a 503).
"""

from __future__ import annotations

import re

from leadflow_gateway.errors import bad_request

_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_ALNUM = re.compile(r"[A-Za-z0-9]+", re.ASCII)
_HEX = re.compile(r"[0-9a-fA-F]+", re.ASCII)
# C0 and C1 controls and DEL: never part of an id, a key or a header value.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The same but tab, line feed and carriage return, which free text (a message) may hold.
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Printable ASCII: what a signature (hex, base64, "v1,", "sha256=") is made of.
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*", re.ASCII)


def is_digits(value: str) -> bool:
    """One or more ASCII digits, nothing else."""
    return _DIGITS.fullmatch(value) is not None


def is_alnum(value: str) -> bool:
    return _ALNUM.fullmatch(value) is not None


def is_hex(value: str) -> bool:
    return _HEX.fullmatch(value) is not None


def has_control(value: str, text: bool = False) -> bool:
    """Whether `value` holds a control character (`text`: other than tab and line breaks)."""
    return (_CONTROL_IN_TEXT if text else _CONTROL).search(value) is not None


def printable_name(name: str, limit: int = 100) -> str:
    """A sender's field name fit to be named in an answer: controls shown as `?`, cut short."""
    return _CONTROL.sub("?", name[:limit])


def digits(field: str, value: str, max_len: int = 18) -> int:
    """The ASCII-digit `value` as an int, else a 400 naming `field`."""
    v = value.strip()
    if not is_digits(v) or len(v) > max_len:
        raise bad_request(field, f"must be at most {max_len} ASCII digits (0-9)")
    return int(v)


def check_id(field: str, value: str) -> str:
    """An id or key as sent, refused when it carries a NUL or another control character."""
    if has_control(value):
        raise bad_request(field, "must not contain NUL or other control characters")
    return value


def check_header_token(field: str, value: str | None) -> None:
    """A signature or timestamp header: printable ASCII only (anything else is malformed, a
    400; a well-formed but wrong value is the caller's 401)."""
    if value is not None and _PRINTABLE_ASCII.fullmatch(value) is None:
        raise bad_request(field, "must be printable ASCII")

"""Opt-out words in a reply or a call (FCC 24-18: revocation per se)."""

from __future__ import annotations

import re

OPT_OUT_WORDS = ("stop", "quit", "end", "revoke", "opt out", "cancel", "unsubscribe")
_PATTERN = re.compile(
    r"\b(?:" + "|".join(w.replace(" ", r"[\s\-]*") for w in OPT_OUT_WORDS) + r")\b", re.IGNORECASE
)


def is_opt_out(text: str) -> bool:
    return bool(_PATTERN.search(text))

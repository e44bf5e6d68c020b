"""The person's own words in an email reply: quoted history and signatures cut off. Pure.

A reply quotes the message it answers, and marketing email carries "unsubscribe" in its footer:
matching the quoted part would turn every reply into a revocation. Only the text above the first
quote marker counts.
"""

from __future__ import annotations

import re

# "On Tue, Dec 1, 2026 at 9:00 AM ACME <x@y> wrote:", Outlook's headers, "-- " signatures.
_CUT = re.compile(
    r"^(?:on\s.+\swrote:\s*$|-{2,}\s*original message\s*-{2,}|_{5,}\s*$|from:\s.+$|-- $|sent from my\s)",
    re.IGNORECASE | re.ASCII,
)


def own_words(text: str) -> str:
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if _CUT.match(line.strip()) or line == "-- ":
            break
        if line.lstrip().startswith(">"):
            continue
        lines.append(line)
    return "\n".join(lines).strip()

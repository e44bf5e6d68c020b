"""Output for people (aligned tables) and for scripts (`--json`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def print_json(message: Any) -> None:
    from google.protobuf.json_format import MessageToDict

    print(
        json.dumps(
            MessageToDict(message, always_print_fields_with_no_presence=True), indent=2, sort_keys=True
        )
    )

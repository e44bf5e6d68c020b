"""A progress bar on stderr for long jobs (DNC import): redrawn in place on a terminal, one line per
tenth otherwise (logs and CI), never on stdout (which stays for results and --json)."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(1, total)
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self._last_tenth = -1

    def advance(self, amount: int) -> None:
        self.done = min(self.total, self.done + amount)
        fraction = self.done / self.total
        if self.stream.isatty():
            filled = int(fraction * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(
                f"\r{self.label} [{bar}] {fraction:4.0%} {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB"
            )
            self.stream.flush()
        elif int(fraction * 10) != self._last_tenth:
            self._last_tenth = int(fraction * 10)
            self.stream.write(f"{self.label}: {fraction:.0%} ({self.done} of {self.total} bytes)\n")
            self.stream.flush()

    def finish(self) -> None:
        if self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()

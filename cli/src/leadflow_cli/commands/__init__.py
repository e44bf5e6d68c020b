"""Each group's handlers; its arguments live in `leadflow_cli.parsers.<group>` (listed in `GROUPS`)."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# Module names under leadflow_cli.parsers, each with `register(subparsers)`.
GROUPS = (
    "ops",
    "tenant",
    "lead",
    "compliance",
    "deadletters",
    "requests",
    "events",
    "dev",
    "certs",
    "secrets",
    "keys",
)


def register_all(sub: argparse._SubParsersAction[Any]) -> None:
    for name in GROUPS:
        module = importlib.import_module(f"leadflow_cli.parsers.{name}")
        module.register(sub)

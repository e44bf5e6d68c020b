"""Each module registers one group of subcommands; add new groups to `GROUPS`."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# Module names under leadflow_cli.commands, each with `register(subparsers)`.
GROUPS = ("tenant", "lead", "compliance", "deadletters", "dev", "certs", "secrets")


def register_all(sub: argparse._SubParsersAction[Any]) -> None:
    for name in GROUPS:
        module = importlib.import_module(f"leadflow_cli.commands.{name}")
        module.register(sub)

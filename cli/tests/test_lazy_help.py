"""`leadflow --help` builds every parser without importing grpc, protobuf, pydantic or SQLAlchemy
(what made it take seconds); `cli/bench_help.py` measures the time itself."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("grpc", "google.protobuf", "pydantic", "sqlalchemy", "leadflow.v1")


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from leadflow_cli.__main__ import build_parser\n"
        "parser = build_parser()\n"
        "parser.format_help()\n"
        "for action in parser._subparsers._group_actions[0].choices.values():\n"
        "    action.format_help()\n"
        f"print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_every_command_resolves_its_handler() -> None:
    import argparse
    import importlib

    from leadflow_cli.__main__ import build_parser

    seen = 0

    def walk(parser: argparse.ArgumentParser) -> None:
        nonlocal seen
        func = parser.get_default("func")
        if func is not None:
            module, _, attr = func.__qualname__.partition(":")
            if module.startswith("leadflow_cli"):
                assert callable(getattr(importlib.import_module(module), attr)), func.__qualname__
                seen += 1
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    walk(child)

    walk(build_parser())
    assert seen > 30

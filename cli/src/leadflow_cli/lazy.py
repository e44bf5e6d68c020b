"""Command handlers named by "module:function", imported only when the command runs.

`leadflow --help` builds every parser; importing grpc, protobuf, pydantic and SQLAlchemy for
that took seconds. The parsers name their handlers instead, and this resolves them on use.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]


def handler(target: str) -> Handler:
    module_name, _, attr = target.partition(":")

    def run(args: argparse.Namespace) -> int:
        func: Handler = getattr(importlib.import_module(module_name), attr)
        return func(args)

    run.__qualname__ = target
    return run

"""`leadflow`: apply tenants, read timelines, and administer compliance and dead letters."""

from __future__ import annotations

import argparse
import sys

import grpc

from leadflow_cli.commands import register_all
from leadflow_core import tls
from leadflow_core.access_policy import CLI
from leadflow_core.grpc_errors import field_violations


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_all(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    tls.set_component(CLI)
    try:
        code: int = args.func(args)
        return code
    except grpc.RpcError as err:
        detail = err.details() if hasattr(err, "details") else str(err)
        code_name = err.code().name if hasattr(err, "code") else "UNKNOWN"
        print(f"error: {code_name}: {detail}", file=sys.stderr)
        for field, why in field_violations(err):
            print(f"  {field}: {why}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, OSError, tls.TlsNotConfigured) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

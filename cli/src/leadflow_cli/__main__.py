"""`leadflow`: status, leads, calls, queues, review, errors, tenants, compliance, dead letters."""

from __future__ import annotations

import argparse
import sys

from leadflow_cli.commands import register_all


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_all(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Imported after parsing: `--help` stays free of grpc.
    from leadflow_core import tls
    from leadflow_core.access_policy import CLI

    tls.set_component(CLI)
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        # Imported only on failure: the happy path and --help stay light.
        from leadflow_cli.failures import report

        return report(err)


if __name__ == "__main__":
    sys.exit(main())

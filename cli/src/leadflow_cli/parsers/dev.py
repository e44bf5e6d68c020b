"""Arguments of `leadflow dev` (no heavy imports: `--help` stays fast)."""

from __future__ import annotations

import argparse
from typing import Any

from leadflow_cli.lazy import handler


def register(sub: argparse._SubParsersAction[Any]) -> None:
    migrate = sub.add_parser(
        "migrate", help="apply every service's Alembic migrations to LEADFLOW_DATABASE_URL"
    )
    migrate.set_defaults(func=handler("leadflow_cli.commands.dev:_migrate"))
    run = sub.add_parser("dev-run", help="migrate and run the whole mesh locally (what `make run` does)")
    run.add_argument("--var-dir", default="var", help="where local data lives (default ./var)")
    run.set_defaults(func=handler("leadflow_cli.commands.dev:_dev_run"))

"""The cost counters: off by default, exact when on. Run in a child process, as a service would
be: `install` hooks every engine of its process for good."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from leadflow_core import cost_counters

_CHILD = """
import json
import sys
from sqlalchemy import text
from leadflow_core import cost_counters
from leadflow_core.db import make_engine

cost_counters.install("probe")
engine = make_engine(sys.argv[1])
with engine.begin() as conn:
    conn.execute(text("SELECT 1"))
    conn.execute(text("SELECT 2"))
with engine.connect() as conn:  # rolled back: no commit
    conn.execute(text("SELECT 3"))
with cost_counters.background():
    with engine.connect() as conn:
        conn.execute(text("SELECT 4"))
cost_counters.count_served("/leadflow.v1.DispatcherService/SubmitLeads")
cost_counters.count_served("/grpc.health.v1.Health/Check")
engine.dispose()
print(json.dumps(cost_counters.snapshot()))
"""


def _run(database_url: str, env: dict[str, str]) -> dict[str, int]:
    """The child's counters, as it saw them at its end."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, database_url],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    counts: dict[str, int] = json.loads(done.stdout.splitlines()[-1])
    return counts


def test_statements_commits_and_served_calls_are_counted_and_written(
    database_url: str, tmp_path: Path
) -> None:
    seen = _run(database_url, {**os.environ, cost_counters.ENV: str(tmp_path)})
    counts = cost_counters.read_by_service(tmp_path)["probe"]
    assert counts == seen  # the file written at exit holds the final totals
    assert counts["sql.product"] == 3
    assert counts["background.sql.product"] == 1
    assert counts["commits"] == 1
    assert counts["grpc_served"] == 1  # health checks are not work
    assert cost_counters.read_all(tmp_path)["by_service.probe.sql"] == 3


def test_off_without_the_setting(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != cost_counters.ENV}
    assert _run(database_url, env) == {}

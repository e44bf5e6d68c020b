"""`leadflow compliance rules [STATE]`: the rules table with citations, read offline.

Runs the installed `leadflow` console script in a child process with no compliance address
reachable, so the listing is shown to need no server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from leadflow_compliance.rule_table import default_table

LEADFLOW = str(Path(sys.executable).with_name("leadflow"))


def leadflow(*argv: str) -> subprocess.CompletedProcess[str]:
    # An address nothing listens on: any gRPC call would fail.
    env = {**os.environ, "LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:9"}
    return subprocess.run(
        [LEADFLOW, *argv], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_one_state_with_citations() -> None:
    out = leadflow("compliance", "rules", "fl")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    hours = next(line for line in lines if "calling_hours" in line)
    cap = next(line for line in lines if "attempt_cap" in line)
    assert "Fla. Stat. 501.616(6)(a)" in hours
    assert "08:00-20:00" in hours
    assert "2021-07-01" in hours
    assert "Fla. Stat. 501.616(6)(b)" in cap
    assert "at most 3 attempt(s) per 24 h" in cap
    assert "934.03(2)(d)" in out.stdout
    assert not any(line.startswith(("UT ", "TX ")) for line in lines)


def test_secondary_rows_are_marked() -> None:
    out = leadflow("compliance", "rules", "TX", "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    hours = next(r for r in rows if r["rule"] == "calling_hours")
    assert hours["citation"] == "Tex. Bus. & Com. Code 301.051"
    assert hours["source"] == "secondary"
    assert "Sun 12:00-21:00" in hours["what"]


def test_every_jurisdiction_listed() -> None:
    out = leadflow("compliance", "rules", "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    table = default_table()
    assert {r["state"] for r in rows} == set(table.states)
    assert len(rows) == sum(max(1, len(row.rules())) for row in table.states.values())
    ut = [r for r in rows if r["state"] == "UT"]
    assert {r["rule"] for r in ut} >= {"calling_hours", "holiday_ban"}
    assert all(r["citation"] for r in rows)


def test_unknown_state_is_a_clear_error() -> None:
    out = leadflow("compliance", "rules", "ZZ")
    assert out.returncode == 2
    assert "unknown state code 'ZZ'" in out.stderr
    assert out.stdout == ""


def test_state_dnc_lists_and_registration_gates_are_listed() -> None:
    out = leadflow("compliance", "rules", "FL", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["rule"]: r for r in (json.loads(line) for line in out.stdout.splitlines())}
    assert rows["dnc_list"]["citation"] == "Fla. Stat. 501.059(4)"
    assert "Florida no sales solicitation calls list" in rows["dnc_list"]["what"]
    assert "refresh every 92 days" in rows["dnc_list"]["what"]
    assert rows["dnc_list"]["source"] == "secondary"
    assert rows["registration"]["citation"] == "Fla. Stat. 501.605(1)"
    assert rows["registration"]["what"] == "commercial telephone seller license (before any call)"

"""The benchmark's statement, commit and gRPC call counters: off by default, exact when on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from leadflow_core import work_counters
from leadflow_core.db import make_engine


def test_statements_and_commits_are_counted_and_written(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(work_counters.ENV, str(tmp_path))
    engine = make_engine(database_url)
    before = work_counters.snapshot()
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT 1"))
            conn.execute(text("SELECT 2"))
        with engine.connect() as conn:  # rolled back: no commit
            conn.execute(text("SELECT 3"))
    finally:
        engine.dispose()
    after = work_counters.snapshot()
    assert after.get("sql_statements", 0) - before.get("sql_statements", 0) == 3
    assert after.get("sql_commits", 0) - before.get("sql_commits", 0) == 1
    work_counters._write()
    (written,) = tmp_path.glob("*.json")
    assert json.loads(written.read_text())["sql_statements"] >= 3


def test_off_without_the_setting(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(work_counters.ENV, raising=False)
    engine = make_engine(database_url)
    before = work_counters.snapshot()
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    assert work_counters.snapshot() == before

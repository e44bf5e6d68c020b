"""Per-process counts of SQL statements, commits and served gRPC calls, for `make bench`.

Off unless `LEADFLOW_WORK_COUNTERS_DIR` is set (then the cost is one dict update per event): each
process writes its running totals to `<dir>/<service>-<pid>.json` twice a second and at exit, and
the benchmark divides the deltas by the leads it sent. PostgreSQL's pg_stat_statements would say
the same but needs a server-wide preload, which a shared database server may not have."""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

ENV = "LEADFLOW_WORK_COUNTERS_DIR"
_counts: Counter[str] = Counter()
_lock = threading.Lock()
_writer: threading.Thread | None = None


def _directory() -> Path | None:
    value = os.environ.get(ENV, "")
    return Path(value) if value else None


def enabled() -> bool:
    return _directory() is not None


def count(name: str, n: int = 1) -> None:
    if _directory() is None:
        return
    with _lock:
        _counts[name] += n
    _ensure_writer()


def snapshot() -> dict[str, int]:
    with _lock:
        return dict(_counts)


def _path(directory: Path) -> Path:
    service = Path(sys.argv[0]).parent.name if sys.argv and sys.argv[0].endswith("__main__.py") else ""
    return directory / f"{service or 'process'}-{os.getpid()}.json"


def _write() -> None:
    directory = _directory()
    if directory is None:
        return
    path = _path(directory)
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(snapshot()))
        tmp.replace(path)  # readers never see half a file
    except OSError:
        pass  # a benchmark aid: never fail the service for it


def _loop() -> None:
    stop = threading.Event()
    while not stop.wait(0.5):
        _write()


def _ensure_writer() -> None:
    global _writer
    if _writer is not None:
        return
    with _lock:
        if _writer is not None:
            return
        directory = _directory()
        if directory is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        _writer = threading.Thread(target=_loop, name="work-counters", daemon=True)
        _writer.start()
        atexit.register(_write)


def _on_statement(*_: Any) -> None:
    count("sql_statements")


def _on_commit(*_: Any) -> None:
    count("sql_commits")


def watch_engine(engine: Engine) -> None:
    """Count every statement sent and every commit on `engine` (an AsyncEngine's `.sync_engine`)."""
    if not enabled():
        return
    event.listen(engine, "before_cursor_execute", _on_statement)
    event.listen(engine, "commit", _on_commit)

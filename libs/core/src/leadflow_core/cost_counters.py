"""Cost counters for benchmarks and cost tests: SQL, commits, gRPC calls, Redis round trips.

Off unless `LEADFLOW_COST_COUNTERS_DIR` is set. Then every SQLAlchemy engine in the process counts
its statements (by table family: a statement touching the local providers' `enrichment_*` tables
stands in for an outside SaaS call and is counted apart) and commits, every channel made by
`leadflow_core.grpc_clients` counts its calls by method, and the totals are written as JSON to
`<dir>/<service>-<pid>.json` every few hundred milliseconds and at exit. A harness sums the files
of all processes before and after a run. Redis round trips are counted in the client (a pipeline
or a script call is one); Redis's own INFO commandstats give the commands behind them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import event
from sqlalchemy.engine import Engine

ENV = "LEADFLOW_COST_COUNTERS_DIR"
_PROVIDER_TABLES = ("enrichment_crm_contacts", "enrichment_simulated_calls")

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_installed = False
_service = ""


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def add(key: str, n: int = 1) -> None:
    with _lock:
        _counts[key] += n


def snapshot() -> dict[str, int]:
    with _lock:
        return dict(_counts)


def _on_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
    family = "provider" if any(t in statement for t in _PROVIDER_TABLES) else "product"
    head = statement.lstrip()[:6].upper()
    if head in ("BEGIN", "COMMIT", "ROLLBA", "SAVEPO", "RELEAS"):
        return
    add(f"sql.{family}")
    add(f"by_service.{_service}.sql")


def _on_commit(_conn: Any) -> None:
    add("commits")
    add(f"by_service.{_service}.commits")


def _count_redis() -> None:
    """Round trips to Redis: each command sent alone, each pipeline (however long) and each
    script call once. (Redis's INFO commandstats counts the commands a script runs inside.)"""
    import redis
    import redis.client

    plain = redis.Redis.execute_command
    flush = redis.client.Pipeline.execute

    def execute_command(self: redis.Redis, *args: Any, **options: Any) -> Any:
        add("redis")
        add(f"by_service.{_service}.redis")
        return plain(self, *args, **options)  # type: ignore[no-untyped-call]

    def execute(self: redis.client.Pipeline, raise_on_error: bool = True) -> list[Any]:
        if self.command_stack:
            add("redis")
            add(f"by_service.{_service}.redis")
        return flush(self, raise_on_error)

    redis.Redis.execute_command = execute_command  # type: ignore[method-assign]
    redis.client.Pipeline.execute = execute  # type: ignore[method-assign]


def install(service: str) -> None:
    """Count this process's statements and commits and dump them (idempotent; no-op when off)."""
    global _installed, _service
    directory = os.environ.get(ENV)
    if not directory or _installed:
        return
    _installed = True
    _service = service
    event.listen(Engine, "before_cursor_execute", _on_statement)
    event.listen(Engine, "commit", _on_commit)
    _count_redis()
    path = Path(directory) / f"{service}-{os.getpid()}.json"

    def dump() -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snapshot()))
        tmp.replace(path)

    def loop() -> None:
        while True:
            threading.Event().wait(0.2)
            with contextlib.suppress(OSError):
                dump()

    threading.Thread(target=loop, name="cost-counters", daemon=True).start()
    atexit.register(dump)


class CountingClientInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
    """Counts each call made on the channel, by full method name."""

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        add(f"grpc.{client_call_details.method}")
        add(f"by_service.{_service}.grpc")
        return continuation(client_call_details, request)

    def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        add(f"grpc.{client_call_details.method}")
        return continuation(client_call_details, request_iterator)


def read_all(directory: Path) -> dict[str, int]:
    """The sum of every process's counters in `directory`."""
    total: Counter[str] = Counter()
    for f in directory.glob("*.json"):
        try:
            total.update(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    return dict(total)

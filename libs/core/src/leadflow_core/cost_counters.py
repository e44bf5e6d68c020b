"""Cost counters for benchmarks and cost tests: SQL, commits, gRPC calls, Redis round trips.

Off unless `LEADFLOW_COST_COUNTERS_DIR` is set (`install`, called by every service's entry point
through `leadflow_core.logs.configure`, then does nothing else). When on, every SQLAlchemy engine
in the process counts its statements (by table family: a statement touching the local providers'
`enrichment_*` tables stands in for an outside SaaS call and is counted apart) and commits, every
channel made by `leadflow_core.grpc_clients` counts its calls by method, every gRPC server counts
the calls it serves (`grpc_served`), and the totals are written as JSON to
`<dir>/<service>-<pid>.json` every few hundred milliseconds and at exit. A harness sums the files
of all processes before and after a run (`read_all`, or `read_by_service`). Redis round trips are
counted in the client (a pipeline or a script call is one); Redis's own INFO commandstats give
the commands behind them. PostgreSQL's pg_stat_statements would count statements too but needs a
server-wide preload, which a shared database server may not have.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import ExecuteStyle

ENV = "LEADFLOW_COST_COUNTERS_DIR"
_PROVIDER_TABLES = ("enrichment_crm_contacts", "enrichment_simulated_calls")

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_installed = False
_service = ""
# LEADFLOW_COST_COUNTERS_STATEMENTS=1: also count each statement's text (to see where they go).
_by_statement = bool(os.environ.get("LEADFLOW_COST_COUNTERS_STATEMENTS"))


def enabled() -> bool:
    return bool(os.environ.get(ENV))


_local = threading.local()


@contextlib.contextmanager
def background() -> Iterator[None]:
    """Count what runs inside as background (periodic polls and sweeps, paid per second
    whatever the load), apart from the per-lead work."""
    before = getattr(_local, "background", False)
    _local.background = True
    try:
        yield
    finally:
        _local.background = before


def add(key: str, n: int = 1) -> None:
    if getattr(_local, "background", False):
        key = "background." + key
    with _lock:
        _counts[key] += n


def snapshot() -> dict[str, int]:
    with _lock:
        return dict(_counts)


def _on_statement(
    _conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    family = "provider" if any(t in statement for t in _PROVIDER_TABLES) else "product"
    head = statement.lstrip()[:6].upper()
    if head in ("BEGIN", "COMMIT", "ROLLBA"):
        return
    # executemany sends one statement per parameter set (pipelined, but each is executed);
    # SQLAlchemy's "insertmanyvalues" batches are one multi-row statement each.
    batched = getattr(context, "execute_style", None) is ExecuteStyle.INSERTMANYVALUES
    n = len(parameters) if executemany and parameters and not batched else 1
    add(f"sql.{family}", n)
    add(f"by_service.{_service}.sql", n)
    if _by_statement:
        add(f"statement.{_service}.{' '.join(statement.split())[:90]}", n)


def _on_commit(_conn: Any) -> None:
    # The workers' own database work is the local CRM's and dial simulator's (outside SaaS
    # stand-ins); our services' commits are the dispatcher's and compliance's.
    add("commits.provider" if _service == "enrichment" else "commits")
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
    _count_dramatiq_polls()


def _count_dramatiq_polls() -> None:
    """A Dramatiq fetch that finds its queue empty is an idle poll (background); one that
    brings messages is work."""
    try:
        from dramatiq.brokers.redis import RedisBroker
    except ImportError:  # a service without Dramatiq
        return
    dispatch = RedisBroker._dispatch

    def _dispatch(self: RedisBroker, command: str) -> Callable[..., Any]:
        inner: Callable[..., Any] = dispatch(self, command)  # type: ignore[no-untyped-call]
        if command != "fetch":
            return inner

        def fetch(*args: Any) -> Any:
            with background():
                result = inner(*args)
            if result:
                add("redis")
                add(f"by_service.{_service}.redis")
            return result

        return fetch

    RedisBroker._dispatch = _dispatch  # type: ignore[method-assign]


def count_served(method: str) -> None:
    """A gRPC call this process served (health and reflection are not work)."""
    if _installed and not method.startswith("/grpc."):
        add("grpc_served")
        add(f"by_service.{_service}.grpc_served")


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
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)

    def dump() -> None:
        # A benchmark aid never fails the service (a harness may remove the directory first).
        with contextlib.suppress(OSError):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(snapshot()))
            tmp.replace(path)  # readers never see half a file

    def loop() -> None:
        while True:
            threading.Event().wait(0.2)
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


def read_by_service(directory: Path) -> dict[str, Counter[str]]:
    """Every process's counters in `directory`, summed per service (the processes of one
    service, e.g. forked gateways, add up)."""
    out: dict[str, Counter[str]] = {}
    for f in directory.glob("*.json"):
        try:
            counts = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        out.setdefault(f.stem.rsplit("-", 1)[0], Counter()).update(counts)
    return out


def read_all(directory: Path) -> dict[str, int]:
    """The sum of every process's counters in `directory`."""
    total: Counter[str] = Counter()
    for counts in read_by_service(directory).values():
        total.update(counts)
    return dict(total)

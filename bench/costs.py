"""Cost per lead: CPU per process (psutil), SQL statements, commits, served gRPC calls and Redis
round trips (the services' own counters, see `leadflow_core.cost_counters`), PostgreSQL
transactions (pg_stat_database) and Redis commands (INFO commandstats). Snapshots before and after
a stage; the deltas divided by the leads stored are stable across noisy runs where rates are not."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis
from sqlalchemy import Engine, text

from leadflow_core import cost_counters


@dataclass
class Snapshot:
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    work: dict[str, Counter[str]] = field(default_factory=dict)
    pg_commits: int = 0
    pg_backends: int = 0
    redis_commands: int = 0


def tree_cpu(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            t = proc.cpu_times()
            total += t.user + t.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


def postgres_backends_cpu(database: str) -> tuple[float, int]:
    """Backends serving our database (their process title names it); the server is shared."""
    total = 0.0
    seen = 0
    for proc in psutil.process_iter(["cmdline"]):
        try:
            title = " ".join(proc.info["cmdline"] or [])
            if not title.startswith("postgres:") or f" {database} " not in title:
                continue
            t = proc.cpu_times()
            total += t.user + t.system
            seen += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total, seen


def _work_counters(directory: Path) -> dict[str, Counter[str]]:
    """Per service, the per-lead work the ACK table reports (periodic background work such as
    relay passes is counted apart by the services and left out here)."""
    out: dict[str, Counter[str]] = {}
    for service, counts in cost_counters.read_by_service(directory).items():
        out[service] = Counter(
            {
                "sql_statements": counts["sql.product"] + counts["sql.provider"],
                "sql_commits": counts["commits"] + counts["commits.provider"],
                "grpc_calls": counts["grpc_served"],
                "redis_round_trips": counts["redis"],
            }
        )
    return out


def redis_commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def snapshot(
    pids: dict[str, int], engine: Engine, database: str, client: redis.Redis, counters_dir: Path
) -> Snapshot:
    snap = Snapshot()
    for name, pid in pids.items():
        snap.cpu_seconds[name] = tree_cpu(pid)
    snap.cpu_seconds["postgres"], snap.pg_backends = postgres_backends_cpu(database)
    snap.work = _work_counters(counters_dir)
    with engine.connect() as conn:
        snap.pg_commits = int(
            conn.execute(
                text("SELECT xact_commit FROM pg_stat_database WHERE datname = :d"), {"d": database}
            ).scalar_one()
        )
    snap.redis_commands = redis_commands(client)
    return snap


def per_lead(before: Snapshot, after: Snapshot, leads: int) -> dict[str, float]:
    """Deltas divided by `leads`: CPU in ms per process, and counts."""
    n = max(leads, 1)
    out: dict[str, float] = {}
    cpu_total = 0.0
    for name, seconds in after.cpu_seconds.items():
        delta = max(0.0, seconds - before.cpu_seconds.get(name, 0.0))
        cpu_total += delta
        out[f"cpu_ms.{name}"] = round(delta * 1000 / n, 3)
    out["cpu_ms.total"] = round(cpu_total * 1000 / n, 3)
    totals: Counter[str] = Counter()
    for service, counts in after.work.items():
        for key, value in counts.items():
            delta = value - before.work.get(service, Counter()).get(key, 0)
            totals[key] += delta
            out[f"{key}.{service}"] = round(delta / n, 3)
    for key, value in totals.items():
        out[key] = round(value / n, 3)
    out["pg_backends_seen"] = after.pg_backends
    out["pg_commits"] = round((after.pg_commits - before.pg_commits) / n, 3)
    out["redis_commands"] = round((after.redis_commands - before.redis_commands) / n, 3)
    return out

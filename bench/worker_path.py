"""The worker path, stored -> dialed: its cost per lead and its speed.

    from bench import worker_path
    costs = worker_path.measure_costs(database_url, workdir, leads=200)   # per-lead counts
    figures = worker_path.run(database_url, workdir)                        # leads/s, drain, latency

Everything runs as real processes (compliance, dispatcher, gateway, workers) on the given
PostgreSQL database and a private `redis-server` on a free port, so Redis's own INFO
commandstats are the Redis cost and nobody else's traffic is in them. The processes count their
SQL statements, commits and gRPC calls (`leadflow_core.cost_counters`); a lead's path is timed
from the dispatcher's own timeline ("received" -> "dialed"). Leads are submitted the way the
gateway does (Evaluate, then SubmitLead) while the workers are stopped, so the counts after the
workers start are the worker path only: enrich -> crm_sync -> dial through the local scorer,
the local CRM and the dial simulator (its status callbacks are held back until the run ends).
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import create_engine

from bench import costs
from bench.workers import lead_to_dial_ms, make_lead, pct, wait_dialed
from leadflow.v1 import (
    compliance_pb2,
    compliance_pb2_grpc,
    dispatcher_pb2,
    dispatcher_pb2_grpc,
    lead_pb2,
    tenants_pb2,
    tenants_pb2_grpc,
)
from leadflow_core import cost_counters
from leadflow_core.db import normalise_url
from leadflow_core.grpc_clients import channel
from leadflow_core.tenant_spec import TenantSpec, to_proto
from leadflow_core.testing import ServiceProcess, service_env, wait_for
from leadflow_enrichment.settings import WORKER_PROCESSES
from tests.e2e.scenario import BENCH_TENANT_SPEC, clock_env

SIMULATOR_TOKEN = "leadflow-simulator-token"  # noqa: S105 (the simulator's local default)


# ---- a private Redis ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    """A redis-server of our own on a free port (no persistence), stopped by its pid."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    data = workdir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(data), "--logfile", str(data / "redis.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(up, timeout=20, what="the private redis-server")
        client.close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def redis_commands(url: str) -> int:
    """Commands Redis has executed (INFO commandstats), without the INFO calls themselves."""
    client = redis.Redis.from_url(url)
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))


# ---- the mesh -------------------------------------------------------------------------------


@dataclass
class Mesh:
    env: dict[str, str]
    workdir: Path
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def start(self, name: str, module: str, more: dict[str, str], wait_port: bool = True) -> ServiceProcess:
        proc = ServiceProcess(name, [sys.executable, "-m", module], {**self.env, **more}, self.workdir)
        self.processes[name] = proc
        return proc.start(wait_port=wait_port)

    def addr(self, name: str) -> str:
        return self.processes[name].addr

    def start_workers(self, round_: str = "") -> list[ServiceProcess]:
        """The worker processes of `WORKER_PROCESSES` (names suffixed with `round_`)."""
        gateway = self.processes["gateway"]
        started = []
        for name, process in WORKER_PROCESSES.items():
            started.append(
                self.start(
                    f"{name}{round_}",
                    "leadflow_enrichment",
                    {
                        "LEADFLOW_COMPLIANCE_ADDR": self.addr("compliance"),
                        "LEADFLOW_DISPATCHER_ADDR": self.addr("dispatcher"),
                        "LEADFLOW_PUBLIC_BASE_URL": f"http://127.0.0.1:{gateway.port}",
                        "LEADFLOW_WORKER_GROUPS": json.dumps(list(process.groups)),
                    },
                    wait_port=False,
                )
            )
        return started

    def stop_workers(self, round_: str = "") -> None:
        for name in WORKER_PROCESSES:
            self.processes[f"{name}{round_}"].stop()

    def stop_all(self) -> None:
        for proc in reversed(list(self.processes.values())):
            proc.stop()


@contextmanager
def running_services(
    database_url: str, redis_url: str, workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Mesh]:
    """Compliance, dispatcher and gateway running; workers not yet (see `Mesh.start_workers`)."""
    env = service_env(
        database_url, redis_url, f"lfwp:{uuid.uuid4().hex[:8]}:", {**clock_env(), **(extra_env or {})}
    )
    mesh = Mesh(env, workdir)
    try:
        compliance = mesh.start(
            "compliance", "leadflow_compliance", {"LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:0"}
        )
        dispatcher = mesh.start(
            "dispatcher",
            "leadflow_dispatcher",
            {
                "LEADFLOW_COMPLIANCE_ADDR": compliance.addr,
                "LEADFLOW_DISPATCHER_ADDR": "127.0.0.1:0",
                "LEADFLOW_DISPATCHER_METRICS_ADDR": "127.0.0.1:0",
            },
        )
        mesh.start(
            "gateway",
            "leadflow_gateway",
            {
                "LEADFLOW_COMPLIANCE_ADDR": compliance.addr,
                "LEADFLOW_DISPATCHER_ADDR": dispatcher.addr,
                "LEADFLOW_GATEWAY_ADDR": "127.0.0.1:0",
            },
        )
        yield mesh
    finally:
        mesh.stop_all()


def new_tenant(mesh: Mesh) -> str:
    name = f"wp-{uuid.uuid4().hex[:8]}"
    spec = {**BENCH_TENANT_SPEC, "sources": {"api": {}, "calls": {"secretRef": {"name": "calls"}}}}
    tenant = to_proto(name, TenantSpec.model_validate(spec), {"calls": {"auth_token": SIMULATOR_TOKEN}})
    ch = channel(mesh.addr("compliance"), default_timeout=10.0)
    try:
        tenants_pb2_grpc.TenantAdminServiceStub(ch).ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=tenant))
    finally:
        ch.close()
    return name


# ---- leads ----------------------------------------------------------------------------------


class Submitter:
    """What the gateway does per lead: Evaluate with compliance, then SubmitLead."""

    def __init__(self, mesh: Mesh) -> None:
        self._channels = [
            channel(mesh.addr("compliance"), default_timeout=30.0),
            channel(mesh.addr("dispatcher"), default_timeout=30.0),
        ]
        self.compliance = compliance_pb2_grpc.ComplianceServiceStub(self._channels[0])
        self.dispatcher = dispatcher_pb2_grpc.DispatcherServiceStub(self._channels[1])

    def one(self, lead: lead_pb2.Lead) -> str:
        decision = self.compliance.Evaluate(
            compliance_pb2.EvaluateRequest(lead=lead, purpose=compliance_pb2.EVALUATION_PURPOSE_INGEST)
        ).decision
        reply = self.dispatcher.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=lead, decision=decision))
        return str(reply.lead_id)

    def many(
        self,
        tenant: str,
        indices: Sequence[int],
        tag: str,
        urgency: int = lead_pb2.URGENCY_MEDIUM,
        concurrency: int = 16,
    ) -> list[str]:
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(lambda i: self.one(make_lead(tenant, i, tag, urgency)), indices))

    def close(self) -> None:
        for ch in self._channels:
            ch.close()


# ---- costs ----------------------------------------------------------------------------------

# Keep status callbacks out of the measured window: the stored -> dialed path is measured.
_QUIET_CALLBACKS = {"LEADFLOW_SIMULATOR_STEP_SECONDS": "900"}


@dataclass(frozen=True)
class Costs:
    leads: int
    sql: int  # our services' statements
    provider_sql: int  # the local CRM's and dial simulator's (stand-ins for outside SaaS)
    commits: int  # our services' (the workers' own are the local providers')
    provider_commits: int
    grpc: int
    redis: int  # round trips, counted by the clients (a pipeline or a script call is one)
    redis_commands: int  # Redis's INFO commandstats: every command, those inside scripts too
    grpc_by_method: dict[str, int]
    seconds: float
    by_service: dict[str, int] = field(default_factory=dict)
    # Periodic work paid per second whatever the load (relay passes, idle queue polls).
    background: dict[str, int] = field(default_factory=dict)
    # Each statement's text and count (with LEADFLOW_COST_COUNTERS_STATEMENTS=1).
    statements: dict[str, int] = field(default_factory=dict)

    def per_lead(self) -> dict[str, float]:
        n = max(self.leads, 1)
        return {
            "sql": self.sql / n,
            "provider_sql": self.provider_sql / n,
            "commits": self.commits / n,
            "provider_commits": self.provider_commits / n,
            "grpc": self.grpc / n,
            "redis": self.redis / n,
            "redis_commands": self.redis_commands / n,
        }

    def lines(self) -> list[str]:
        p = self.per_lead()
        methods = ", ".join(
            f"{m.rsplit('/', 1)[-1]} {c / max(self.leads, 1):.2f}"
            for m, c in sorted(self.grpc_by_method.items())
        )
        return [
            f"worker path per lead ({self.leads} leads, {self.leads / self.seconds:.1f} leads/s): "
            f"{p['sql']:.1f} SQL (+{p['provider_sql']:.1f} in the local CRM/simulator), "
            f"{p['commits']:.2f} commits (+{p['provider_commits']:.2f}), {p['grpc']:.2f} gRPC, "
            f"{p['redis']:.1f} Redis round trips "
            f"({p['redis_commands']:.1f} Redis commands)",
            f"  gRPC per lead: {methods}",
            "  background per second (relay passes, idle polls): "
            + ", ".join(
                f"{k} {v / max(self.seconds, 1e-9):.1f}" for k, v in sorted(self.background.items()) if v
            ),
            "  by process per lead: "
            + ", ".join(f"{k} {v / max(self.leads, 1):.2f}" for k, v in sorted(self.by_service.items()) if v),
        ]


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}


def measure_costs(
    database_url: str,
    workdir: Path,
    leads: int = 200,
    timeout: float = 300.0,
    extra_env: dict[str, str] | None = None,
) -> Costs:
    """Per-lead SQL, commits, gRPC calls and Redis commands from stored to dialed, counted in
    every process involved (dispatcher and its relay, compliance, workers; the gateway too)."""
    counters = workdir / "counters"
    counters.mkdir(parents=True, exist_ok=True)
    env = {cost_counters.ENV: str(counters), **_QUIET_CALLBACKS, **(extra_env or {})}
    engine = create_engine(normalise_url(database_url))
    try:
        with (
            private_redis(workdir) as redis_url,
            running_services(database_url, redis_url, workdir, env) as mesh,
        ):
            tenant = new_tenant(mesh)
            submitter = Submitter(mesh)
            try:
                ids = submitter.many(tenant, range(leads), f"cost{uuid.uuid4().hex[:6]}")
            finally:
                submitter.close()
            time.sleep(1.0)  # let the dispatcher's note-writer and counters settle
            before = cost_counters.read_all(counters)
            redis_before = redis_commands(redis_url)
            start = time.monotonic()
            mesh.start_workers()
            wait_dialed(engine, tenant, ids, timeout)
            seconds = time.monotonic() - start
            time.sleep(0.5)  # the last counter dumps
            counts = _delta(cost_counters.read_all(counters), before)
            redis_used = redis_commands(redis_url) - redis_before
    finally:
        engine.dispose()
    by_method = {k.removeprefix("grpc."): v for k, v in counts.items() if k.startswith("grpc.") and v}
    return Costs(
        leads=leads,
        sql=counts.get("sql.product", 0),
        provider_sql=counts.get("sql.provider", 0),
        commits=counts.get("commits", 0),
        provider_commits=counts.get("commits.provider", 0),
        grpc=sum(by_method.values()),
        redis=counts.get("redis", 0),
        redis_commands=redis_used,
        grpc_by_method=by_method,
        seconds=seconds,
        by_service={
            k.removeprefix("by_service."): v for k, v in counts.items() if k.startswith("by_service.")
        },
        background={
            k.removeprefix("background."): v
            for k, v in counts.items()
            if k.startswith("background.") and not k.startswith("background.by_service.")
        },
        statements={
            k.removeprefix("statement."): v for k, v in counts.items() if k.startswith("statement.") and v
        },
    )


# ---- speed ----------------------------------------------------------------------------------


def _cpu_seconds(mesh: Mesh, database: str) -> dict[str, float]:
    """CPU seconds so far of each running process of the mesh and of our database's backends."""
    cpu = {
        name.removesuffix("-2"): costs.tree_cpu(proc.proc.pid)
        for name, proc in mesh.processes.items()
        if proc.proc is not None and proc.proc.poll() is None
    }
    cpu["postgres"] = costs.postgres_backends_cpu(database)[0]
    return cpu


def _cpu_ms_per_lead(before: dict[str, float], after: dict[str, float], leads: int) -> dict[str, float]:
    out = {name: round(1000 * (after[name] - before.get(name, 0.0)) / leads, 2) for name in after}
    out["total"] = round(sum(out.values()), 2)
    return out


@dataclass(frozen=True)
class Figures:
    leads_per_second: float
    backlog: int
    backlog_drain_seconds: float
    emergency_p50_ms: float
    emergency_p99_ms: float
    # CPU ms per lead of each process: end to end (callbacks flowing; the gateway's share
    # includes storing the leads) and through the backlog drain (workers from their readiness).
    cpu_ms_end_to_end: dict[str, float] = field(default_factory=dict)
    cpu_ms_drain: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            f"worker path end to end: {self.leads_per_second:.1f} leads/s (stored -> enriched, synced, "
            "dialed)",
            f"backlog of {self.backlog} leads drained in {self.backlog_drain_seconds:.1f} s "
            f"({self.backlog / self.backlog_drain_seconds:.1f} leads/s)",
            f"emergency lead -> dial under half load: p50 {self.emergency_p50_ms:.0f} ms, "
            f"p99 {self.emergency_p99_ms:.0f} ms",
            f"CPU ms per lead, end to end: {_listed(self.cpu_ms_end_to_end)}",
            f"CPU ms per lead, backlog drain: {_listed(self.cpu_ms_drain)}",
        ]

    def as_dict(self) -> dict[str, float]:
        return {
            "worker_leads_per_second": self.leads_per_second,
            "backlog": self.backlog,
            "backlog_drain_seconds": self.backlog_drain_seconds,
            "emergency_p50_ms": self.emergency_p50_ms,
            "emergency_p99_ms": self.emergency_p99_ms,
            **{f"cpu_ms_end_to_end.{k}": v for k, v in self.cpu_ms_end_to_end.items()},
            **{f"cpu_ms_drain.{k}": v for k, v in self.cpu_ms_drain.items()},
        }


def _listed(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.1f}" for name, ms in cpu.items())


def run(
    database_url: str,
    workdir: Path | None = None,
    load: int = 1000,
    backlog: int = 5000,
    emergencies: int = 50,
    timeout: float = 1800.0,
) -> Figures:
    """End-to-end leads/s with the workers running, a backlog drain, and emergency lead -> dial
    latency while low leads arrive at half the measured rate."""
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-wp-") as tmp:
        work = workdir or Path(tmp)
        engine = create_engine(normalise_url(database_url))
        try:
            with private_redis(work) as redis_url, running_services(database_url, redis_url, work) as mesh:
                tenant = new_tenant(mesh)
                submitter = Submitter(mesh)
                database = engine.url.database or ""
                mesh.start_workers()
                try:
                    # 1. Throughput: submit `load` leads as fast as we can, wait for every dial.
                    cpu_before = _cpu_seconds(mesh, database)
                    start = time.monotonic()
                    ids = submitter.many(tenant, range(load), "load")
                    wait_dialed(engine, tenant, ids, timeout)
                    rate = load / (time.monotonic() - start)
                    cpu_e2e = _cpu_ms_per_lead(cpu_before, _cpu_seconds(mesh, database), load)

                    # 2. Emergencies among low leads arriving at half that rate.
                    half = max(rate / 2, 1.0)
                    lows: list[str] = []
                    urgent: list[str] = []
                    first = load
                    gap = 1.0 / half
                    every = max(1, int(half // max(emergencies / 10, 1)))
                    n = 0
                    t0 = time.monotonic()
                    while len(urgent) < emergencies:
                        i = first + n
                        if n % every == 0:
                            urgent.append(
                                submitter.one(make_lead(tenant, i, "emergency", lead_pb2.URGENCY_EMERGENCY))
                            )
                        else:
                            lows.append(submitter.one(make_lead(tenant, i, "bg", lead_pb2.URGENCY_LOW)))
                        n += 1
                        sleep = t0 + n * gap - time.monotonic()
                        if sleep > 0:
                            time.sleep(sleep)
                    wait_dialed(engine, tenant, urgent, timeout)
                    latencies = lead_to_dial_ms(engine, tenant, urgent)
                    wait_dialed(engine, tenant, lows, timeout)

                    # 3. Backlog: build it with the workers stopped, then time them through it.
                    mesh.stop_workers()
                    base = first + n
                    backlog_ids = submitter.many(tenant, range(base, base + backlog), "backlog")
                    mesh.start_workers("-2")
                    cpu_before = _cpu_seconds(mesh, database)
                    drain = wait_dialed(engine, tenant, backlog_ids, timeout)
                    cpu_drain = _cpu_ms_per_lead(cpu_before, _cpu_seconds(mesh, database), backlog)
                finally:
                    submitter.close()
        finally:
            engine.dispose()
    return Figures(
        leads_per_second=rate,
        backlog=backlog,
        backlog_drain_seconds=drain,
        emergency_p50_ms=statistics.median(latencies) if latencies else float("nan"),
        emergency_p99_ms=pct(latencies, 99),
        cpu_ms_end_to_end=cpu_e2e,
        cpu_ms_drain=cpu_drain,
    )

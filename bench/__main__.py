"""`make bench`: the mesh on a fresh PostgreSQL database and Redis prefix, loaded from outside.

Stages (all by default; `--only STAGE` repeats):
  floors      bare ASGI app on the gateway's server stack (same wrk command), grpc.aio echo,
              PostgreSQL one-row commits, Redis pipelined SETs
  ack         durable ACK under wrk: leads/s, p50/p99, per-lead SQL statements, commits, gRPC
              calls, Redis commands and CPU ms per process; every 2xx checked in PostgreSQL
  ack-kill    the same with gateway and dispatcher SIGKILLed and restarted mid-run
  api         direct API from a Python client, lead posted -> dialed (end to end)
  sources     signed Meta, HubSpot, form and API mix (Python client)
  compliance  compliance Evaluate over gRPC
  workers     end to end through every worker, emergencies under load, backlog drain
  worker-path the worker path: per-lead costs, end to end, backlog drain, emergency latency

Results go to stdout as a table and to `--json` (default var/bench/results.json). Needs `wrk`
(Debian: `apt-get install -y wrk`, or `make bench-setup`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, create_engine, make_url

from bench import ack, costs, floors
from bench.api_client import dial_times, post_leads, report
from bench.backends import bench_backends
from leadflow_core import cost_counters
from leadflow_core.db import normalise_url
from leadflow_core.testing import REPO_ROOT, ServiceProcess, provision_tls, wait_for
from tests.e2e.mesh import Mesh, running_mesh
from tests.e2e.scenario import BENCH_TENANT_SPEC, clock_env, tenant_secrets
from tests.fakes.meta_graph import GraphState, serve_graph

STAGES = ("floors", "ack", "ack-kill", "api", "sources", "compliance", "workers", "worker-path")
DEFAULT_STAGES = ("floors", "ack", "ack-kill", "api", "sources", "compliance", "workers", "worker-path")


@dataclass
class Run:
    """What every stage gets: the mesh, its database, the options, and the results so far."""

    args: argparse.Namespace
    mesh: Mesh
    graph: GraphState
    db_url: str
    engine: Engine
    redis_client: redis.Redis
    workdir: Path
    counters_dir: Path
    clock_offset: float
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def database(self) -> str:
        return str(make_url(self.db_url).database)

    def pids(self) -> dict[str, int]:
        return {n: p.proc.pid for n, p in self.mesh.processes.items() if p.proc is not None}

    def snapshot(self) -> costs.Snapshot:
        return costs.snapshot(self.pids(), self.engine, self.database, self.redis_client, self.counters_dir)


def _ratio(value: float, floor: float | None) -> float | None:
    return round(value / floor, 4) if floor else None


@contextmanager
def _server(workdir: Path, what: str) -> Iterator[int]:
    """One of the floors' servers in its own process group (the HTTP one forks per core)."""
    port_file = workdir / f"floor-{what}.port"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.floors", what, str(port_file)],
        cwd=REPO_ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield wait_for(lambda: int(port_file.read_text()) if port_file.exists() else None, 30, what=what)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


def stage_floors(run: Run) -> None:
    a = run.args
    out: dict[str, Any] = {}
    with _server(run.workdir, "http") as port:
        base = f"http://127.0.0.1:{port}"
        reqs = run.workdir / "floor-requests"
        reqs.mkdir(exist_ok=True)
        tenants = [ack.Tenant(t, "floor-key") for t in ack.TENANTS]
        ack.write_requests(reqs, base, tenants, a.wrk_requests, a.wrk_threads, "floor")
        res = ack.run_wrk(base, reqs, a.wrk_threads, a.wrk_connections, a.seconds)
        out["http_req_per_s"] = round(res.summary["requests"] / (res.summary["duration_us"] / 1e6), 1)
        out["http_p50_ms"] = res.summary["p50_us"] / 1000
        out["http_p99_ms"] = res.summary["p99_us"] / 1000
    with _server(run.workdir, "grpc-echo") as port:
        out["grpc_echo_calls_per_s"] = round(
            floors.grpc_echo_rate(f"127.0.0.1:{port}", a.seconds / 2, a.grpc_concurrency), 1
        )
    dsn = make_url(run.db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    out["pg_commits_per_s"] = round(floors.postgres_commit_rate(dsn, a.seconds / 2, a.pg_connections), 1)
    out["pg_connections"] = a.pg_connections
    prefix = run.mesh.redis_prefix
    out["redis_ops_per_s"] = round(floors.redis_pipelined_rate(run.mesh.redis_url, prefix, a.seconds / 4), 1)
    run.results["floors"] = out
    print("\n== floors (same run, same machine)")
    for key, value in out.items():
        print(f"  {key:24s} {value}")


_lead_counter = [0]


def _apply_ack_tenants(run: Run) -> list[ack.Tenant]:
    if "ack_tenants" not in run.results:
        run.results["ack_tenants"] = [
            ack.Tenant(name, run.mesh.apply_tenant(name, ack.SPEC, ack.SECRETS)) for name in ack.TENANTS
        ]
    tenants: list[ack.Tenant] = run.results["ack_tenants"]
    return tenants


def _ack(run: Run, kill: bool) -> dict[str, Any]:
    a = run.args
    tenants = _apply_ack_tenants(run)
    base = run.mesh.gateway_url
    reqs = run.workdir / ("ack-kill" if kill else "ack")
    reqs.mkdir(exist_ok=True)
    tag = f"{'kill' if kill else 'ack'}{int(time.time())}"
    # Warm-up on its own leads: connections, caches, first-import costs.
    ack.write_requests(reqs, base, tenants, 200, 1, tag + "w", first=_lead_counter[0])
    _lead_counter[0] += 200
    ack.run_wrk(base, reqs, 1, 4, 2)
    ack.write_requests(reqs, base, tenants, a.wrk_requests, a.wrk_threads, tag, first=_lead_counter[0])
    _lead_counter[0] += a.wrk_requests
    # The ACK path alone: workers would spend the same cores on enrich, CRM sync and dial.
    workers = run.mesh.processes["workers"]
    if a.ack_without_workers:
        workers.stop()
    before = run.snapshot()
    killer = ack.kill_midway(run.mesh.processes, a.seconds / 3) if kill else None
    profilers = [] if kill or a.profile is None else _profile(run, a.profile, a.seconds)
    res = ack.run_wrk(base, reqs, a.wrk_threads, a.wrk_connections, a.seconds)
    if killer is not None:
        killer.join(120)
    for prof in profilers:
        prof.wait(60)
    time.sleep(1.0)  # the cost counters are written every 200 ms
    after = run.snapshot()
    if a.ack_without_workers:
        workers.start(wait_port=False)
    seconds = res.summary["duration_us"] / 1e6
    out: dict[str, Any] = {
        "connections": a.wrk_connections,
        "seconds": round(seconds, 1),
        "statuses": {str(k): v for k, v in sorted(res.statuses.items())},
        "leads_per_s": round(res.accepted / seconds, 1),
        "p50_ms": res.summary["p50_us"] / 1000,
        "p99_ms": res.summary["p99_us"] / 1000,
        "socket_errors": sum(
            int(res.summary[k]) for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        "answered_2xx": len(res.stored_ids),
        "lost_2xx": ack.missing_leads(run.engine, res.stored_ids),
    }
    if not kill:
        out["per_lead"] = costs.per_lead(before, after, res.accepted)
    floor = run.results.get("floors", {})
    out["ratio_to_http_floor"] = _ratio(out["leads_per_s"], floor.get("http_req_per_s"))
    return out


def _profile(run: Run, directory: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    """py-spy on each service for the length of the load (collapsed stacks, one file each).

    `--gil` samples only the thread holding the GIL: psycopg waits on its socket in a way
    py-spy does not see as idle, so without it PostgreSQL round trips pass for Python CPU.
    """
    directory.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--format",
                "raw",
                "--subprocesses",
                "--nonblocking",
                "--gil",
                "-r",
                "50",
                "-d",
                str(int(seconds)),
                "-o",
                str(directory / f"{name}.txt"),
                "--pid",
                str(pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in run.pids().items()
        if name in ("gateway", "compliance", "dispatcher")
    ]


def stage_ack(run: Run) -> None:
    out = _ack(run, kill=False)
    run.results["ack"] = out
    print(f"\n== durable ACK under wrk ({out['connections']} connections, {out['seconds']} s)")
    print(json.dumps(out, indent=2))


def stage_ack_kill(run: Run) -> None:
    out = _ack(run, kill=True)
    run.results["ack_kill"] = out
    print("\n== durable ACK, gateway and dispatcher SIGKILLed and restarted mid-run")
    print(json.dumps(out, indent=2))


def stage_api(run: Run) -> None:
    a = run.args
    api_key = run.mesh.apply_tenant("bench", BENCH_TENANT_SPEC, tenant_secrets())
    asyncio.run(post_leads(run.mesh, api_key, 20, 4, "warm", run.clock_offset, first=5000))
    t0 = time.perf_counter()
    samples = asyncio.run(post_leads(run.mesh, api_key, a.leads, a.clients, "run", run.clock_offset))
    elapsed = time.perf_counter() - t0
    ids = {s.lead_id for s in samples if s.status == 202}
    dialed = dial_times(run.db_url, "bench", ids, a.dial_timeout)
    report(f"direct API, {a.clients} concurrent clients", samples, elapsed, dialed)
    run.results["api"] = {"leads": len(samples), "accepted": len(ids), "dialed": len(dialed)}


def stage_sources(run: Run) -> None:
    from bench import sources

    a = run.args
    api_key = run.mesh.apply_tenant(sources.TENANT, sources.SPEC, sources.SECRETS)
    base = run.mesh.gateway_url
    asyncio.run(sources.run_source_mix(base, api_key, run.graph, 40, 4, "warm"))
    stats, elapsed = asyncio.run(
        sources.run_source_mix(base, api_key, run.graph, a.source_leads, a.clients, "run")
    )
    sources.report(stats, elapsed, a.clients)
    run.results["sources"] = {
        "leads_per_s": round(sum(s.accepted for s in stats.values()) / elapsed, 1),
    }


def stage_compliance(run: Run) -> None:
    from bench import compliance_evaluate

    figures = compliance_evaluate.run(run.mesh.processes["compliance"].addr, run.args.evaluations, 8)
    print("\n== compliance Evaluate over gRPC, 8 concurrent clients")
    print(json.dumps(figures))
    run.results["compliance"] = figures
    floor = run.results.get("floors", {})
    figures["ratio_to_grpc_floor"] = _ratio(
        figures["evaluations_per_second"], floor.get("grpc_echo_calls_per_s")
    )  # type: ignore[assignment]


def stage_workers(run: Run) -> None:
    from bench import workers

    a = run.args
    run.mesh.apply_tenant("bench-workers", BENCH_TENANT_SPEC, tenant_secrets())
    proc = run.mesh.processes["workers"]
    figures = workers.run_all(
        run.mesh.dispatcher(),
        run.mesh.compliance(),
        run.engine,
        "bench-workers",
        stop_workers=lambda: _stop(proc),
        start_workers=lambda: _start(proc),
        load=a.load,
        emergencies=a.emergencies,
        backlog=a.backlog,
    )
    print("\n== workers: end to end with every worker running")
    for line in figures.lines():
        print(line)
    run.results["workers"] = figures.__dict__


def _stop(proc: ServiceProcess) -> None:
    proc.stop()


def _start(proc: ServiceProcess) -> None:
    proc.start(wait_port=False)


def stage_worker_path(run: Run) -> None:
    """The worker path on its own mesh and private Redis: per-lead costs stored -> dialed, then
    end-to-end leads/s, a backlog drain and emergency latency at half load."""
    from bench import worker_path

    for sub in ("worker-path-costs", "worker-path"):
        (run.workdir / sub).mkdir(parents=True, exist_ok=True)
    # Each on a database of its own: the main mesh's relay, on the run's database, would take
    # over these meshes' overdue jobs (a backlog outlives its leases) and its workers do them.
    with bench_backends() as (db_url, _, _):
        costs = worker_path.measure_costs(db_url, run.workdir / "worker-path-costs")
    with bench_backends() as (db_url, _, _):
        figures = worker_path.run(
            db_url,
            run.workdir / "worker-path",
            load=run.args.load,
            backlog=run.args.backlog,
            emergencies=run.args.emergencies,
        )
    run.results["worker_path"] = {"per_lead": costs.per_lead(), **figures.as_dict()}
    print("\n== worker path (stored -> dialed)")
    for name, value in run.results["worker_path"]["per_lead"].items():
        print(f"  {name:>24}: {value:.2f} per lead")
    for name, value in figures.as_dict().items():
        print(f"  {name:>24}: {value:.1f}")


RUNNERS: dict[str, Callable[[Run], None]] = {
    "floors": stage_floors,
    "ack": stage_ack,
    "ack-kill": stage_ack_kill,
    "api": stage_api,
    "sources": stage_sources,
    "compliance": stage_compliance,
    "workers": stage_workers,
    "worker-path": stage_worker_path,
}


def table(results: dict[str, Any]) -> str:
    """The README's benchmark table: each product figure beside its floor."""
    floor = results.get("floors", {})
    rows = [("figure", "value", "floor", "ratio")]
    if "ack" in results:
        r = results["ack"]
        rows.append(
            ("durable ACK leads/s", r["leads_per_s"], floor.get("http_req_per_s"), r["ratio_to_http_floor"])
        )
        rows.append(
            (
                "ACK p50 / p99 ms",
                f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}",
                f"{floor.get('http_p50_ms', 0):.1f} / {floor.get('http_p99_ms', 0):.1f}",
                "",
            )
        )
        rows.append(("lost 2xx (ACK)", r["lost_2xx"], "0", ""))
        per = r.get("per_lead", {})
        for key in (
            "sql_statements",
            "sql_commits",
            "pg_commits",
            "grpc_calls",
            "redis_round_trips",
            "redis_commands",
            "cpu_ms.total",
        ):
            if key in per:
                rows.append((f"per lead: {key}", per[key], "", ""))
        for key, value in sorted(per.items()):
            if key.startswith("cpu_ms.") and key != "cpu_ms.total":
                rows.append((f"per lead: {key}", value, "", ""))
    if "ack_kill" in results:
        r = results["ack_kill"]
        rows.append(("lost 2xx (SIGKILL mid-run)", f"{r['lost_2xx']} of {r['answered_2xx']}", "0", ""))
    if "compliance" in results:
        r = results["compliance"]
        rows.append(
            (
                "Evaluate/s",
                r["evaluations_per_second"],
                floor.get("grpc_echo_calls_per_s"),
                r.get("ratio_to_grpc_floor"),
            )
        )
    if "workers" in results:
        r = results["workers"]
        rows.append(("end to end leads/s", round(r["leads_per_second"], 1), "", ""))
        rows.append(("emergency lead->dial p99 ms", round(r["emergency_p99_ms"]), "", ""))
    for key in ("pg_commits_per_s", "redis_ops_per_s"):
        if key in floor:
            rows.append((f"floor: {key}", floor[key], "", ""))
    lines = ["| " + " | ".join(str(c) for c in rows[0]) + " |", "| --- | --- | --- | --- |"]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=STAGES, action="append", help="run only these stages")
    parser.add_argument("--seconds", type=float, default=20.0, help="wrk duration per load stage")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--wrk-connections", type=int, default=32)
    parser.add_argument(
        "--wrk-requests", type=int, default=30000, help="distinct leads signed per load stage"
    )
    parser.add_argument("--gateway-processes", type=int, default=1, help="0 = one per core")
    parser.add_argument("--grpc-concurrency", type=int, default=32)
    parser.add_argument("--pg-connections", type=int, default=16)
    parser.add_argument("--leads", type=int, default=500, help="direct-API leads (api stage)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--source-leads", type=int, default=800)
    parser.add_argument("--evaluations", type=int, default=2000)
    parser.add_argument("--load", type=int, default=1000, help="leads for the end-to-end worker figure")
    parser.add_argument("--emergencies", type=int, default=50)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--dial-timeout", type=float, default=600.0)
    parser.add_argument(
        "--ack-with-workers",
        dest="ack_without_workers",
        action="store_false",
        help="keep the workers running during the ACK stages (by default they are stopped)",
    )
    parser.add_argument("--profile", type=Path, help="py-spy the services during `ack` into this directory")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "var" / "bench" / "results.json")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    stages = args.only or list(DEFAULT_STAGES)
    if any(s in stages for s in ("floors", "ack", "ack-kill")):
        ack.require_wrk()
    env = clock_env()
    offset = float(env["LEADFLOW_CLOCK_OFFSET_SECONDS"])
    with ExitStack() as stack:
        graph_url, graph = stack.enter_context(serve_graph("bench-page-token"))
        db_url, redis_url, prefix = stack.enter_context(bench_backends())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        # Every hop is mutual TLS: a CA of this run's own, as the tests have.
        os.environ.update(provision_tls(workdir / "tls"))
        counters_dir = workdir / "cost-counters"
        extra = {
            **env,
            **ack.GATEWAY_ENV,
            "LEADFLOW_META_GRAPH_URL": graph_url,
            cost_counters.ENV: str(counters_dir),
            "LEADFLOW_GATEWAY_PROCESSES": str(args.gateway_processes),
        }
        mesh = stack.enter_context(running_mesh(db_url, redis_url, prefix, workdir, extra))
        engine = create_engine(normalise_url(db_url))
        stack.callback(engine.dispose)
        client = redis.Redis.from_url(redis_url)
        stack.callback(client.close)
        run = Run(args, mesh, graph, db_url, engine, client, workdir, counters_dir, offset)
        for stage in STAGES:
            if stage in stages:
                RUNNERS[stage](run)
        run.results.pop("ack_tenants", None)
        run.results["machine"] = {"cpus": os.cpu_count(), "gateway_processes": args.gateway_processes}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(run.results, indent=2, default=str))
        print(f"\n== results ({args.json})\n{table(run.results)}")


if __name__ == "__main__":
    main()

"""`python -m leadflow_enrichment`: a Dramatiq worker process (or several) for Leadflow's queues.

    python -m leadflow_enrichment                        # every queue, in the default groups
    python -m leadflow_enrichment --queues dial.emergency,dial.high --threads 4
    python -m leadflow_enrichment --group urgent=dial.emergency,dial.high:4 --group jobs=enrich:8
    python -m leadflow_enrichment --processes 2          # two copies, supervised

Each group is a Dramatiq worker with threads of its own, so a backlog of low leads never takes
the threads the emergency queue needs. In Kubernetes run one group per Deployment (`--queues`)
and let the HPA scale each on its queue depth.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from leadflow_core import queues, tls
from leadflow_core.access_policy import DIAL_WORKER, JOBS_WORKER
from leadflow_core.grpc_server import write_port_file
from leadflow_core.logs import configure, get_logger
from leadflow_enrichment.settings import WorkerSettings

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from leadflow_enrichment.providers.registry import ProviderRegistry


@dataclass(frozen=True)
class Group:
    name: str
    queues: tuple[str, ...]
    threads: int


def parse_group(spec: str, default_threads: int = 8) -> Group:
    """ "name=queue,queue:threads" (name and threads optional)."""
    name, _, rest = spec.rpartition("=") if "=" in spec else ("", "", spec)
    names, _, threads = rest.partition(":")
    chosen = tuple(q.strip() for q in names.split(",") if q.strip())
    unknown = sorted(set(chosen) - set(queues.ALL_QUEUES))
    if unknown or not chosen:
        raise SystemExit(f"unknown queue(s) {unknown or spec!r}; known: {', '.join(queues.ALL_QUEUES)}")
    return Group(name or chosen[0], chosen, int(threads) if threads else default_threads)


def worker_identity(groups: list[Group]) -> str:
    """The certificate a worker process calls with: its kind, from the queues it consumes."""
    consumed = {q for g in groups for q in g.queues}
    dial = {q for q in consumed if q in queues.DIAL_QUEUES}
    if dial == consumed:
        return DIAL_WORKER
    if not dial:
        return JOBS_WORKER
    return "worker"  # both kinds in one process (`make run`): a certificate naming both


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m leadflow_enrichment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--queues", help="comma-separated queues for one group (default: every queue, in the default groups)"
    )
    parser.add_argument("--threads", type=int, default=8, help="worker threads for --queues (default 8)")
    parser.add_argument(
        "--group", action="append", default=[], help="name=queue,queue:threads; repeatable (default groups)"
    )
    parser.add_argument("--processes", type=int, default=1, help="copies of this worker to run (default 1)")
    return parser


def _supervise(argv: list[str], processes: int) -> int:
    """Run `processes` copies of this worker and pass SIGTERM/SIGINT on to them."""
    children = [
        subprocess.Popen([sys.executable, "-m", "leadflow_enrichment", *argv, "--processes", "1"])
        for _ in range(processes)
    ]

    def forward(signum: int, _: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max((child.wait() for child in children), default=0)


def _strip_processes(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        out.append(arg)
    return out


def _warm_up(registry: ProviderRegistry, log: FilteringBoundLogger, wait_seconds: float = 10.0) -> None:
    """The providers' pools before the first job; a database down or unanswering now is the
    jobs' to retry, never a worker that does not start (so the wait is bounded)."""

    def warm() -> None:
        try:
            registry.warm_up()
        except Exception as err:
            log.warning("provider_warm_up_failed", error=str(err))

    thread = threading.Thread(target=warm, name="provider-warm-up", daemon=True)
    thread.start()
    thread.join(wait_seconds)
    if thread.is_alive():
        log.warning("provider_warm_up_slow", waited_seconds=wait_seconds)


def run(groups: list[Group], settings: WorkerSettings) -> None:
    import dramatiq

    from leadflow_enrichment import actors  # noqa: F401 - declares the actors on our broker
    from leadflow_enrichment.broker import broker
    from leadflow_enrichment.context import get_context
    from leadflow_enrichment.heartbeat import Heartbeat

    log = get_logger("leadflow.worker")
    context = get_context()
    _warm_up(context.registry, log)
    heartbeat = Heartbeat(broker, settings.worker_heartbeat_seconds)
    heartbeat.start()
    workers = []
    for group in groups:
        # An idle consumer polls Redis with a backoff up to worker_timeout: keep it short where
        # a lead must be picked up at once.
        urgent = bool(set(group.queues) & queues.URGENT_QUEUES)
        worker = dramatiq.Worker(
            broker,
            queues=set(group.queues),
            worker_threads=group.threads,
            worker_timeout=settings.urgent_poll_ms if urgent else settings.poll_ms,
        )
        worker.start()
        workers.append(worker)
        log.info("worker_group_started", group=group.name, queues=list(group.queues), threads=group.threads)
    serve_health(settings, broker, workers)
    # Workers serve no RPC port: the port file gets our pid, telling a supervisor we consume now.
    write_port_file(settings.port_file, os.getpid())

    stop = threading.Event()

    def handler(signum: int, _: FrameType | None) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    stop.wait()
    # Messages not started yet go back to their queues; running ones get time to finish.
    for worker in workers:
        worker.stop(timeout=int(settings.shutdown_grace_seconds * 1000))
    heartbeat.stop()
    context.close()
    broker.close()
    log.info("stopped")


def serve_health(settings: WorkerSettings, broker: Any, workers: list[Any]) -> None:
    """The metrics and health port (liveness and readiness probes); a port already taken (a
    second copy under --processes) leaves this copy without one rather than down."""
    from leadflow_core.metrics_server import bound_port, start_metrics_server

    log = get_logger("leadflow.worker")

    def ready() -> tuple[bool, str]:
        try:
            broker.client.ping()
        except Exception as err:
            return False, f"redis: {err}"
        if not workers:
            return False, "no worker group running"
        return True, ""

    try:
        server = start_metrics_server(settings.worker_metrics_addr, ready)
    except OSError as err:
        log.warning("metrics_port_unavailable", addr=settings.worker_metrics_addr, error=str(err))
        return
    write_port_file(settings.metrics_port_file, bound_port(server))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    settings = WorkerSettings()
    configure("enrichment", settings.log_level)
    if args.processes > 1:
        return _supervise(_strip_processes(argv), args.processes)
    if args.queues:
        groups = [parse_group(f"{args.queues}:{args.threads}")]
    else:
        groups = [parse_group(g) for g in (args.group or settings.worker_groups)]
    tls.set_component(worker_identity(groups))
    run(groups, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())

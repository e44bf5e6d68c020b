"""The mesh on fixed ports, so a service killed and started again is found where it was."""

from __future__ import annotations

import sys
from pathlib import Path

from faults.backends import free_port
from leadflow_core import queues
from leadflow_core.testing import ServiceProcess, service_env
from tests.e2e.mesh import Mesh

# Each worker kind in its own process (as in Kubernetes), so each can be killed alone.
SERVICES = ("compliance", "dispatcher", "gateway", "dial-worker", "jobs-worker")
JOB_QUEUES = ",".join(q for q in queues.ALL_QUEUES if q not in queues.DIAL_QUEUES)
DIAL_QUEUES = ",".join(q for q in queues.ALL_QUEUES if q in queues.DIAL_QUEUES)


def start_mesh(database_url: str, redis_url: str, workdir: Path, extra_env: dict[str, str]) -> Mesh:
    env = service_env(database_url, redis_url, "faults:", extra_env)
    addrs = {name: f"127.0.0.1:{free_port()}" for name in ("compliance", "dispatcher", "gateway")}
    gateway_url = f"http://{addrs['gateway']}"
    mesh = Mesh(database_url, redis_url, "faults:", workdir)
    own = {
        "compliance": ("leadflow_compliance", {"LEADFLOW_COMPLIANCE_ADDR": addrs["compliance"]}),
        "dispatcher": (
            "leadflow_dispatcher",
            {
                "LEADFLOW_COMPLIANCE_ADDR": addrs["compliance"],
                "LEADFLOW_DISPATCHER_ADDR": addrs["dispatcher"],
            },
        ),
        "gateway": (
            "leadflow_gateway",
            {
                "LEADFLOW_COMPLIANCE_ADDR": addrs["compliance"],
                "LEADFLOW_DISPATCHER_ADDR": addrs["dispatcher"],
                "LEADFLOW_GATEWAY_ADDR": addrs["gateway"],
            },
        ),
    }
    workers = {
        "LEADFLOW_COMPLIANCE_ADDR": addrs["compliance"],
        "LEADFLOW_DISPATCHER_ADDR": addrs["dispatcher"],
        "LEADFLOW_PUBLIC_BASE_URL": gateway_url,
    }
    argv = {name: [sys.executable, "-m", module] for name, (module, _) in own.items()}
    argv["dial-worker"] = [sys.executable, "-m", "leadflow_enrichment", "--queues", DIAL_QUEUES]
    argv["jobs-worker"] = [sys.executable, "-m", "leadflow_enrichment", "--queues", JOB_QUEUES]
    env_of = {name: more for name, (_, more) in own.items()}
    env_of["dial-worker"] = env_of["jobs-worker"] = workers
    try:
        for name in SERVICES:
            ports = {"LEADFLOW_METRICS_PORT_FILE": str(workdir / f"{name}.metrics.port")}
            proc = ServiceProcess(name, argv[name], {**env, **ports, **env_of[name]}, workdir)
            mesh.processes[name] = proc
            restart(mesh, name)
    except BaseException:
        stop_mesh(mesh)
        raise
    return mesh


def restart(mesh: Mesh, name: str) -> None:
    """Start (again) on the same address; workers have no port to wait for."""
    mesh.processes[name].start(wait_port=not name.endswith("worker"), timeout=120)


def stop_mesh(mesh: Mesh) -> None:
    for ch in mesh.channels:
        ch.close()
    for proc in reversed(list(mesh.processes.values())):
        proc.stop()

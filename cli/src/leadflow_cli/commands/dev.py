"""`leadflow migrate` and `leadflow dev-run`: the local mesh on one machine."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from leadflow.v1 import tenants_pb2
from leadflow_cli import local_redis
from leadflow_cli.commands.certs import ensure_dev_certificates
from leadflow_cli.connections import tenant_admin
from leadflow_cli.manifests import build_tenant, load_documents, parse_tenants
from leadflow_cli.parsers.dev import register as register
from leadflow_cli.supervisor import Child, Supervisor
from leadflow_core.db import is_sqlite
from leadflow_core.migrations import SERVICES_WITH_SCHEMA, upgrade
from leadflow_core.settings import CommonSettings
from leadflow_enrichment.settings import WORKER_PROCESSES

REPO_ROOT = Path(__file__).resolve().parents[4]
DEMO_TENANT = REPO_ROOT / "examples" / "tenant-demo.yaml"


def _migrate(args: argparse.Namespace) -> int:
    settings = CommonSettings()
    for service in SERVICES_WITH_SCHEMA:
        upgrade(service, settings.database_url)
        print(f"migrated {service}")
    return 0


def _host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def _demo_api_key(settings: CommonSettings) -> str:
    tenants, secrets = parse_tenants(load_documents([DEMO_TENANT]))
    stub = tenant_admin(settings)
    reply = stub.ApplyTenant(
        tenants_pb2.ApplyTenantRequest(tenant=build_tenant(tenants[0], secrets), issue_api_key=True)
    )
    if reply.api_key:
        return reply.api_key
    # The tenant already existed (keys are only stored hashed): issue a fresh key for this run.
    return stub.CreateApiKey(tenants_pb2.CreateApiKeyRequest(name=tenants[0].name)).api_key


def checkout_redis_prefix(configured: str, root: Path | None = None) -> str:
    """Keys of two checkouts running `make run` against one Redis never meet: without an explicit
    LEADFLOW_REDIS_PREFIX, the prefix names this checkout (a hash of its absolute path)."""
    if configured:
        return configured
    digest = hashlib.sha256(str((root or Path.cwd()).resolve()).encode()).hexdigest()[:10]
    return f"dev-{digest}:"


def _dev_run(args: argparse.Namespace) -> int:
    settings = CommonSettings()
    var = Path(args.var_dir)
    run_dir = var / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    kind = "SQLite" if is_sqlite(settings.database_url) else "PostgreSQL"
    print(f"database: {kind}")
    _migrate(args)
    tls_dir = (var / "tls").resolve()
    created = ensure_dev_certificates(tls_dir)
    if created:
        print(f"tls: created a development CA and certificates in {tls_dir}")
    os.environ["LEADFLOW_TLS_DIR"] = str(tls_dir)

    sup = Supervisor(base_env={"LEADFLOW_DATABASE_URL": settings.database_url})
    redis_proc = None
    if not local_redis.answers(settings.redis_url):
        try:
            redis_proc = local_redis.start_private(settings.redis_url, var)
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        deadline = time.monotonic() + 20
        while not local_redis.answers(settings.redis_url):
            if redis_proc.poll() is not None or time.monotonic() > deadline:
                print(
                    f"error: the private redis-server did not start ({settings.redis_url})", file=sys.stderr
                )
                return 1
            time.sleep(0.1)
        print(f"redis: started a private redis-server, data in {var / 'redis'}")
    else:
        print(f"redis: using {settings.redis_url}")
    print(f"redis keys: prefixed {checkout_redis_prefix(settings.redis_prefix)!r} (this checkout's own)")

    gw_host, gw_port = _host_port(settings.gateway_addr)
    public_url = f"http://{gw_host}:{gw_port}"
    common = {
        "LEADFLOW_REDIS_URL": settings.redis_url,
        "LEADFLOW_REDIS_PREFIX": checkout_redis_prefix(settings.redis_prefix),
        "LEADFLOW_COMPLIANCE_ADDR": settings.compliance_addr,
        "LEADFLOW_DISPATCHER_ADDR": settings.dispatcher_addr,
        "LEADFLOW_GATEWAY_ADDR": settings.gateway_addr,
        "LEADFLOW_PUBLIC_BASE_URL": public_url,
        "LEADFLOW_TLS_DIR": str(tls_dir),
    }
    py = sys.executable

    stopping = False

    def _on_signal(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        for name, module in (
            ("compliance", "leadflow_compliance"),
            ("dispatcher", "leadflow_dispatcher"),
            ("gateway", "leadflow_gateway"),
        ):
            sup.start(Child(name, [py, "-m", module], dict(common), port_file=run_dir / f"{name}.port"))
        for name, process in WORKER_PROCESSES.items():
            groups = {
                "LEADFLOW_WORKER_GROUPS": json.dumps(list(process.groups)),
                "LEADFLOW_WORKER_METRICS_ADDR": os.environ.get(
                    "LEADFLOW_WORKER_METRICS_ADDR", process.local_metrics_addr
                ),
            }
            sup.start(Child(name, [py, "-m", "leadflow_enrichment"], {**common, **groups}))
        api_key = _demo_api_key(settings)
        print(
            "\nLeadflow is running.\n"
            f"  gateway:    {public_url}  (POST /v1/leads, /v1/webhooks/demo/form, /docs)\n"
            f"  compliance: {settings.compliance_addr} (gRPC)\n"
            f"  dispatcher: {settings.dispatcher_addr} (gRPC)\n"
            f"  tenant 'demo' API key for this run: {api_key}\n\n"
            "Send a first lead:\n"
            f"  curl -s {public_url}/v1/leads -H 'Authorization: Bearer {api_key}' "
            "-H 'Content-Type: application/json' \\\n"
            '    -d \'{"first_name":"Ada","last_name":"Lovelace","phone":"+12125550123",'
            '"email":"ada@example.com","consent":{"granted":true,"disclosure_text":'
            '"I agree to be called","seller":"demo","form_submission_id":"demo-1"},'
            '"message":"no heat since last night"}\'\n'
            "then: .venv/bin/leadflow leads timeline demo <lead_id>\n"
            ".venv/bin/leadflow status shows every component and queue.\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping:
            dead = sup.first_exited()
            if dead is not None:
                print(f"error: {dead.name} exited (code {dead.proc.returncode if dead.proc else '?'})")
                return 1
            time.sleep(0.2)
        return 0
    except Exception as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        print("stopping the mesh ...", flush=True)
        sup.stop_all()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(15)

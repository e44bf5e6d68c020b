"""Durable ACK under `wrk` load: distinct signed leads for several tenants and sources, every
answer recorded, and afterwards every 2xx checked against PostgreSQL.

`--kill` SIGKILLs the gateway and the dispatcher a third of the way into the run and restarts
them on the same ports; the check is the same: a 2xx whose lead is not stored is a lost lead.
Python signs the deliveries just before the run (HubSpot's v3 window is five minutes); wrk
replays them (bench/leads.lua), so the load generator costs next to nothing per request."""

# ruff: noqa: S105 - the bench tenants' made-up secrets
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psutil
from sqlalchemy import Engine, text

from leadflow_core.testing import ServiceProcess
from leadflow_gateway import signatures

LUA = Path(__file__).with_name("leads.lua")
SOURCES = ("api", "form", "hubspot")
HUBSPOT_SECRET = "bench-ack-hubspot-secret"
FORM_KEY = "bench-ack-form-key"
TENANTS = ("bench-ack-a", "bench-ack-b", "bench-ack-c")
SPEC: dict[str, Any] = {
    "displayName": "Durable ACK bench",
    "limits": {
        "callsPerMinute": 100000,
        "callsPerHour": 1000000,
        "callsPerDay": 10000000,
        "concurrentCalls": 10000,
    },
    "budget": {"dailyUsd": "1000000.00"},
    "policy": {"defaultRegion": "US"},
    "sources": {
        "api": {},
        "hubspot": {"secretRef": {"name": "hubspot"}},
        "form": {"secretRef": {"name": "form"}},
    },
}
SECRETS = {"hubspot": {"client_secret": HUBSPOT_SECRET}, "form": {"form_key": FORM_KEY}}
# The gateway's abuse limits would refuse a load test from one address.
GATEWAY_ENV = {
    "LEADFLOW_RATE_LIMIT_IP_PER_MINUTE": str(10**9),
    "LEADFLOW_RATE_LIMIT_TENANT_PER_MINUTE": str(10**9),
}
# New York area codes: distinct people for every lead (leads of one person would be merged).
_AREAS = ("212", "646", "917", "347", "718", "929", "332", "516", "631", "914", "845", "585")


def install_hint() -> str:
    return "wrk is not installed: `sudo apt-get install -y wrk` (Debian package) or `make bench-setup`"


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(install_hint())
    return path


def phone(i: int) -> str:
    return f"+1{_AREAS[(i // 8000) % len(_AREAS)]}{200 + (i // 10000) % 700:03d}{i % 10000:04d}"


@dataclass(frozen=True)
class Tenant:
    name: str
    api_key: str


def delivery(source: str, tenant: Tenant, i: int, tag: str, base: str) -> tuple[str, bytes, dict[str, str]]:
    """One signed delivery as its sender would make it; distinct phone, email and key per `i`."""
    if source == "hubspot":
        path = f"/v1/webhooks/{tenant.name}/hubspot"
        body = json.dumps(
            {
                "objectId": f"{tag}{i}",
                "properties": {"firstname": {"value": "Hub"}, "phone": {"value": phone(i)}},
            }
        ).encode()
        ts = str(int(time.time() * 1000))
        sig = signatures.hubspot_v3_signature(HUBSPOT_SECRET, "POST", base + path, body, ts)
        return (
            path,
            body,
            {
                "Content-Type": "application/json",
                "X-HubSpot-Request-Timestamp": ts,
                "X-HubSpot-Signature-v3": sig,
            },
        )
    if source == "form":
        fields = {"form_key": FORM_KEY, "name": f"Form {i}", "phone": phone(i), "consent": "on"}
        return (
            f"/v1/webhooks/{tenant.name}/form",
            urlencode(fields).encode(),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Idempotency-Key": f"form-{tag}-{i}",
            },
        )
    body = json.dumps(
        {"full_name": f"Api {i}", "phone": phone(i), "email": f"a{i}.{tag}@example.com"}
    ).encode()
    return (
        "/v1/leads",
        body,
        {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {tenant.api_key}",
            "Idempotency-Key": f"api-{tag}-{i}",
        },
    )


def write_requests(
    directory: Path, base: str, tenants: list[Tenant], total: int, threads: int, tag: str, first: int = 0
) -> None:
    """`requests-<thread>.bin`: length-prefixed raw HTTP/1.1 requests, round-robin over tenants
    and sources."""
    host = base.removeprefix("http://")
    files = [(directory / f"requests-{k}.bin").open("wb") for k in range(threads)]
    try:
        for n in range(total):
            i = first + n
            tenant = tenants[n % len(tenants)]
            source = SOURCES[(n // len(tenants)) % len(SOURCES)]
            path, body, headers = delivery(source, tenant, i, tag, base)
            head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            raw = head.encode() + body
            files[n % threads].write(f"{len(raw)}\n".encode() + raw)
    finally:
        for f in files:
            f.close()


@dataclass
class WrkResult:
    summary: dict[str, float]
    statuses: Counter[int]
    stored_ids: set[str]

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)


def run_wrk(url: str, directory: Path, threads: int, connections: int, seconds: float) -> WrkResult:
    for old in directory.glob("answers-*.txt"):
        old.unlink()
    argv = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:.0f}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        str(directory),
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    match = re.search(r"^WRK_JSON (\{.*\})$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    summary = json.loads(match.group(1))
    statuses: Counter[int] = Counter()
    ids: set[str] = set()
    for path in directory.glob("answers-*.txt"):
        for line in path.read_text().splitlines():
            status, _, lead = line.partition(" ")
            statuses[int(status)] += 1
            if status in ("200", "202") and lead != "-":
                ids.add(lead)
    return WrkResult(summary, statuses, ids)


def missing_leads(engine: Engine, ids: set[str]) -> int:
    """How many answered-2xx lead ids have no row in dispatcher_leads."""
    if not ids:
        return 0
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM dispatcher_leads WHERE id = ANY(:ids)"), {"ids": list(ids)}
        ).scalar_one()
    return len(ids) - int(found)


def _kill_tree(proc: ServiceProcess) -> None:
    """SIGKILL a service and the server processes it forked (the gateway's per-core servers)."""
    assert proc.proc is not None
    try:
        children = psutil.Process(proc.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.kill(signal.SIGKILL)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            continue


def pin_ports(processes: dict[str, ServiceProcess], names: tuple[str, ...]) -> None:
    """Restart on the same ports: the gateway's clients and wrk's URL stay valid."""
    for name in names:
        proc = processes[name]
        key = f"LEADFLOW_{name.upper()}_ADDR"
        proc.env[key] = f"127.0.0.1:{proc.port}"


def kill_midway(processes: dict[str, ServiceProcess], after: float) -> threading.Thread:
    names = ("gateway", "dispatcher")
    pin_ports(processes, names)

    def run() -> None:
        time.sleep(after)
        for name in names:
            _kill_tree(processes[name])
        for name in reversed(names):  # dispatcher first: the gateway's channel points at it
            processes[name].start()

    thread = threading.Thread(target=run, name="kill-midway", daemon=True)
    thread.start()
    return thread

"""`leadflow compliance ...` against the real compliance process."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from leadflow.v1 import tenants_pb2, tenants_pb2_grpc
from leadflow_cli.commands import compliance as cli
from leadflow_core.testing import ServiceProcess
from services.compliance.tests.conftest import make_tenant


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="leadflow")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


def test_cli_administers_compliance(
    compliance_server: ServiceProcess,
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    workdir: Path,
) -> None:
    monkeypatch.setenv("LEADFLOW_COMPLIANCE_ADDR", compliance_server.addr)
    tenant = make_tenant(admin).name
    phone = "+12125550166"
    assert run("compliance", "consent", "record", tenant, phone, "--disclosure", "I agree") == 0
    assert run("compliance", "consent", "revoke", tenant, phone, "--note", "asked by phone") == 0
    assert run("compliance", "dnc", "add", tenant, phone, "--reason", "asked") == 0
    assert run("compliance", "dnc", "remove", tenant, phone) == 0
    assert run("compliance", "pause", tenant, "--reason", "billing") == 0
    assert admin.GetTenant(tenants_pb2.GetTenantRequest(name=tenant)).tenant.paused
    assert run("compliance", "resume", tenant) == 0
    assert not admin.GetTenant(tenants_pb2.GetTenantRequest(name=tenant)).tenant.paused
    assert run("compliance", "estop", "set", "--tenant", tenant, "--duration", "60", "--reason", "test") == 0
    assert run("compliance", "estop", "clear", "--tenant", tenant) == 0
    registry = workdir / "change.txt"
    registry.write_text("212,5550167\n212,5550168\n")
    assert run("compliance", "dnc", "import", str(registry), "--add") == 0
    out = capsys.readouterr().out
    assert "0 lines rejected" in out
    assert run("compliance", "audit", "export", tenant) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    actions = [r["action"] for r in lines]
    for expected in (
        "consent.record",
        "consent.revoke",
        "dnc.add",
        "dnc.remove",
        "tenant.pause",
        "tenant.resume",
        "emergency_stop.set",
        "emergency_stop.clear",
    ):
        assert expected in actions
    assert all(r["tenant"] == tenant for r in lines)
    assert phone not in json.dumps(lines)

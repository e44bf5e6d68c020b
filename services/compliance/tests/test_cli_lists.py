"""`leadflow dnc ...` and `leadflow keys ...` against the real compliance process: what the CLI
prints is what the service answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict

from leadflow.v1 import compliance_pb2, compliance_pb2_grpc, tenants_pb2, tenants_pb2_grpc
from leadflow_cli.__main__ import main
from leadflow_core.testing import ServiceProcess
from services.compliance.tests.conftest import make_tenant


def test_dnc_list_add_remove_and_import_with_progress(
    compliance_server: ServiceProcess,
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
    compliance: compliance_pb2_grpc.ComplianceServiceStub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    workdir: Path,
) -> None:
    monkeypatch.setenv("LEADFLOW_COMPLIANCE_ADDR", compliance_server.addr)
    tenant = make_tenant(admin).name
    assert main(["dnc", "add", tenant, "+12125550171", "--reason", "asked"]) == 0
    assert main(["dnc", "add", tenant, "+12125550172"]) == 0
    assert main(["dnc", "add", tenant, "+12125550172"]) == 0
    assert "already on the list" in capsys.readouterr().out
    assert main(["dnc", "remove", tenant, "+12125550172"]) == 0
    capsys.readouterr()

    assert main(["dnc", "list", tenant, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    want = compliance.ListDoNotCall(compliance_pb2.ListDoNotCallRequest(tenant=tenant))
    assert listed == MessageToDict(want, always_print_fields_with_no_presence=True)
    assert want.total == 1
    assert want.entries[0].reason == "asked"
    assert main(["dnc", "list", tenant]) == 0
    out = capsys.readouterr().out
    assert want.entries[0].subject_hash in out
    assert "+12125550171" not in out  # only the keyed hash is ever stored

    registry = workdir / "registry-change.txt"
    registry.write_text("".join(f"212,555{n:04d}\n" for n in range(2000, 2400)))
    assert main(["dnc", "import", str(registry), "--add"]) == 0
    captured = capsys.readouterr()
    # The registry is the session's: other tests' change files may have added numbers before.
    loaded = re.search(r": (\d+) numbers, 0 lines rejected", captured.out)
    assert loaded is not None, captured.out
    assert int(loaded.group(1)) >= 400
    assert "importing registry-change.txt: 100%" in captured.err


def test_keys_create_list_revoke(
    compliance_server: ServiceProcess,
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LEADFLOW_COMPLIANCE_ADDR", compliance_server.addr)
    tenant = make_tenant(admin).name
    assert main(["keys", "create", tenant, "--name", "zapier", "--scope", "ingest"]) == 0
    zapier_key = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["keys", "create", tenant, "--name", "reports"]) == 0
    reports_key = capsys.readouterr().out.strip().splitlines()[-1]
    assert (
        admin.AuthenticateApiKey(tenants_pb2.AuthenticateApiKeyRequest(api_key=zapier_key)).tenant == tenant
    )

    assert main(["keys", "list", tenant, "--json"]) == 0
    listed = {k["name"]: k for k in json.loads(capsys.readouterr().out)["keys"]}
    assert listed["zapier"]["scopes"] == ["ingest"]
    assert listed["reports"]["scopes"] == ["ingest", "read"]
    assert zapier_key.startswith(listed["zapier"]["prefix"] + "_")

    assert main(["keys", "revoke", tenant, listed["zapier"]["prefix"]]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "list", tenant]) == 0
    table = capsys.readouterr().out
    assert table.count("valid") == 1
    assert "zapier" in table
    assert listed["zapier"]["prefix"] in table
    # The key itself is never listed.
    for key in (zapier_key, reports_key):
        assert key not in table
        assert key.rsplit("_", 1)[1] not in table

"""DNC Registry change files with deletions (`,D`), on SQLite and PostgreSQL, and over gRPC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text

from leadflow.v1 import compliance_pb2, compliance_pb2_grpc, decision_pb2, tenants_pb2_grpc
from leadflow_compliance import dnc_registry
from services.compliance.tests.conftest import make_tenant
from services.compliance.tests.test_compliance_grpc import evaluate, lead, rule_ids

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "entry"),
    [
        (b"201,5550123", (2015550123, False)),
        (b"2015550123", (2015550123, False)),
        (b"201,5550123,A", (2015550123, False)),
        (b"201,5550123,D", (2015550123, True)),
        (b'"201","5550123","D"\r', (2015550123, True)),
        (b"12015550123,d", (2015550123, True)),
        (b"2015550123D", (2015550123, True)),
        (b"201,5550123,X", None),
        (b"D", None),
        (b"101,5550123,D", None),
    ],
)
def test_parse_entry(line: bytes, entry: tuple[int, bool] | None) -> None:
    assert dnc_registry.parse_entry(line) == entry


def _numbers(engine: Engine) -> set[int]:
    with engine.connect() as conn:
        slot = conn.execute(text("SELECT active_slot FROM compliance_dnc_registry_state")).scalar_one()
        table = dnc_registry.SLOTS[slot]
        between = "number BETWEEN 6465550300 AND 6465550399"
        rows = conn.execute(text(f"SELECT number FROM {table} WHERE {between}"))  # noqa: S608
        return {int(r[0]) for r in rows}


def test_change_file_adds_and_deletes(engine: Engine) -> None:
    # Numbers in 646-555-03xx only: the PostgreSQL registry is shared with the other tests.
    full = b"646,5550301\n646,5550302\n646,5550303\n646,5550304\n"
    if engine.url.get_backend_name() == "sqlite":
        first = dnc_registry.load(engine, [full], replace=True, now=NOW)
        assert (first.numbers_loaded, first.lines_rejected) == (4, 0)
    else:
        dnc_registry.load(engine, [full], replace=False, now=NOW)
    assert _numbers(engine) == {6465550301, 6465550302, 6465550303, 6465550304}

    change = [
        b"646,5550301,D\n6465550302,d\r\n646,55503",  # a line split across two chunks
        b"05,A\n646,5550306\n646,5550399,D\n",  # deleting a number not listed removes nothing
        b"646,5550303,D\n646,5550303,A\ngarbage,D\n",  # added and deleted: stays listed
    ]
    result = dnc_registry.load(engine, change, replace=False, now=NOW)
    assert result.numbers_removed == 2
    assert result.lines_rejected == 1
    assert _numbers(engine) == {6465550303, 6465550304, 6465550305, 6465550306}

    if engine.url.get_backend_name() == "sqlite":
        # A full file has nothing to delete from: its D lines are rejected, the rest replaces.
        again = dnc_registry.load(engine, [b"646,5550310\n646,5550311,D\n"], replace=True, now=NOW)
        assert (again.numbers_loaded, again.lines_rejected, again.numbers_removed) == (1, 1, 0)
        assert _numbers(engine) == {6465550310}
    else:
        dnc_registry.load(engine, [b"".join(b"646,55503%02d,D\n" % i for i in range(100))], False, NOW)
        assert _numbers(engine) == set()


def test_change_file_deletion_over_grpc(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(admin).name
    phone = "+16465550350"

    def upload(data: bytes) -> compliance_pb2.ImportDncRegistryResponse:
        return compliance.ImportDncRegistry(iter([compliance_pb2.ImportDncRegistryChunk(data=data)]))

    assert upload(b"646,5550350,A\n").lines_rejected == 0
    listed = evaluate(compliance, lead(tenant, phone, consent=False))
    assert "dnc.registry" in rule_ids(listed)
    assert upload(b"646,5550350,D\n").lines_rejected == 0
    cleared = evaluate(compliance, lead(tenant, phone, consent=False))
    assert "dnc.registry" not in rule_ids(cleared)
    # Still no consent, so still not dialed: only the registry reason is gone.
    assert cleared.action == decision_pb2.DIAL_ACTION_NEVER
    assert "consent.missing" in rule_ids(cleared)

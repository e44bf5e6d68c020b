"""State DNC lists and registrations through the real compliance process (import and Evaluate).

The session's server has every state list loaded (holding only an undialed number) except
Wyoming's, and `make_tenant` registers tenants wherever registration gates calling (conftest).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest
from pydantic import ValidationError

from leadflow.v1 import (
    compliance_pb2,
    compliance_pb2_grpc,
    decision_pb2,
    tenant_pb2,
    tenants_pb2,
    tenants_pb2_grpc,
)
from leadflow_cli.__main__ import main
from leadflow_core.grpc_errors import field_violations
from leadflow_core.tenant_spec import TenantSpec
from leadflow_core.testing import ServiceProcess
from leadflow_core.timestamps import to_proto
from services.compliance.tests.conftest import UNLOADED_STATE_LIST, make_tenant
from services.compliance.tests.test_compliance_grpc import evaluate, lead

NEVER = decision_pb2.DIAL_ACTION_NEVER
DIAL_NOW = decision_pb2.DIAL_ACTION_DIAL_NOW


def chunks(
    data: bytes, list_id: str, replace: bool = False
) -> Iterator[compliance_pb2.ImportDncRegistryChunk]:
    yield compliance_pb2.ImportDncRegistryChunk(data=data, replace=replace, list=list_id)


def reason(d: decision_pb2.Decision, rule_id: str) -> decision_pb2.Reason:
    (found,) = [r for r in d.reasons if r.rule_id == rule_id]
    return found


def test_a_number_on_the_texas_list_is_refused_and_one_off_it_allowed(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(admin).name
    # A change file: adds to the loaded Texas list, leaving the rest of it in place.
    reply = compliance.ImportDncRegistry(chunks(b"214,5550171\n", "state:TX"))
    assert reply.lines_rejected == 0
    listed = evaluate(compliance, lead(tenant, "+12145550171"))
    assert listed.action == NEVER
    r = reason(listed, "state.TX.dnc_list")
    assert r.statute == "Tex. Bus. & Com. Code 304.052"
    assert "Texas no-call list" in r.message
    assert "secondary source" in r.message
    # The same number is not on the national registry or another state's list: only Texas refuses.
    assert {x.rule_id for x in listed.reasons} == {"state.TX.dnc_list"}
    assert evaluate(compliance, lead(tenant, "+12145550172")).action == DIAL_NOW
    # A change file's deletion takes it off again.
    compliance.ImportDncRegistry(chunks(b"214,5550171,D\n", "state:TX"))
    assert evaluate(compliance, lead(tenant, "+12145550171")).action == DIAL_NOW


def test_a_list_never_loaded_sends_the_lead_to_review(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    assert UNLOADED_STATE_LIST == "WY"
    tenant = make_tenant(admin).name
    d = evaluate(compliance, lead(tenant, "+13075550100"))
    assert d.action == NEVER
    assert d.needs_review
    r = reason(d, "state.WY.dnc_list.not_loaded")
    assert r.message.startswith("state DNC list for WY (Wyoming do-not-call list) not loaded")
    assert r.statute == "Wyo. Stat. 40-12-302"


def test_a_list_older_than_its_refresh_period_is_stale(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(admin).name
    # The Florida list was loaded when the session began; 100 days on, a quarter has passed.
    ny = ZoneInfo("America/New_York")
    later = (datetime.now(UTC) + timedelta(days=100)).astimezone(ny).replace(hour=15, minute=0)
    while later.weekday() >= 5:
        later += timedelta(days=1)
    d = evaluate(compliance, lead(tenant, "+13055550171"), later)
    assert d.action == NEVER
    assert d.needs_review
    r = reason(d, "state.FL.dnc_list.stale")
    assert "92-day refresh period" in r.message
    assert r.statute == "Fla. Stat. 501.059(4)"


def test_registration_missing_or_expired_refuses_present_allows(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    phone = "+13055550172"
    unregistered = make_tenant(admin, policy={"registrations": [{"state": "TX", "id": "TX-1"}]}).name
    d = evaluate(compliance, lead(unregistered, phone))
    assert d.action == NEVER
    assert d.needs_review
    r = reason(d, "state.FL.registration")
    assert r.statute == "Fla. Stat. 501.605(1)"
    assert "not registered in Florida" in r.message
    # OPEN is 2026-11-18: a registration valid through the 17th has expired, through the 18th not.
    expired = make_tenant(
        admin, policy={"registrations": [{"state": "FL", "id": "FL-9", "expires": "2026-11-17"}]}
    )
    d = evaluate(compliance, lead(expired.name, phone))
    assert d.action == NEVER
    assert "expired on 2026-11-17" in reason(d, "state.FL.registration.expired").message
    valid = make_tenant(
        admin, policy={"registrations": [{"state": "FL", "id": "FL-9", "expires": "2026-11-18"}]}
    )
    assert valid.policy.registrations[0].expires == "2026-11-18"
    assert evaluate(compliance, lead(valid.name, phone)).action == DIAL_NOW


def test_the_pennsylvania_list_binds_from_its_effective_date(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    tenant = make_tenant(admin).name
    compliance.ImportDncRegistry(chunks(b"215,5550171\n", "state:PA"))
    et = ZoneInfo("America/New_York")

    def at(day: int) -> decision_pb2.Decision:
        when = datetime(2019, 12, day, 14, 0, tzinfo=et)
        msg = lead(tenant, "+12155550171")
        msg.consent.consented_at.CopyFrom(to_proto(when - timedelta(days=1)))
        return evaluate(compliance, msg, when)

    # 73 P.S. 2245.2(a), effective 2019-12-03 (Act 73 of 2019).
    assert at(2).action == DIAL_NOW
    d = at(3)
    assert d.action == NEVER
    assert reason(d, "state.PA.dnc_list").statute == "73 P.S. 2245.2(a) (effective 2019-12-03)"


def test_an_unknown_list_is_invalid_and_changes_nothing(
    compliance: compliance_pb2_grpc.ComplianceServiceStub, admin: tenants_pb2_grpc.TenantAdminServiceStub
) -> None:
    for bad in ("state:XX", "state:", "texas", "state:TX\x00"):
        with pytest.raises(grpc.RpcError) as err:
            compliance.ImportDncRegistry(chunks(b"307,5550100\n", bad))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(err.value)[0][0] == "list"
    tenant = make_tenant(admin).name
    assert evaluate(compliance, lead(tenant, "+13075550100")).needs_review


def test_cli_imports_a_state_list(
    compliance_server: ServiceProcess,
    compliance: compliance_pb2_grpc.ComplianceServiceStub,
    admin: tenants_pb2_grpc.TenantAdminServiceStub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("LEADFLOW_COMPLIANCE_ADDR", compliance_server.addr)
    tenant = make_tenant(admin).name
    # Both spellings: `leadflow compliance dnc import` and `leadflow dnc import` (with progress).
    for argv, code, number in (
        (["compliance", "dnc", "import"], "MO", "314,5550172"),
        (["dnc", "import"], "OK", "405,5550172"),
    ):
        path = tmp_path / f"{code}.txt"
        path.write_text(f"{number}\nnot a number\n")
        assert main([*argv, str(path), "--add", "--list", f"state:{code}"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"state:{code} list sha256:")
        assert "1 lines rejected" in out
        d = evaluate(compliance, lead(tenant, "+1" + number.replace(",", "")))
        assert d.action == NEVER
        assert (
            reason(d, f"state.{code}.dnc_list").statute
            == {"MO": "RSMo 407.1098", "OK": "15 O.S. 775B.4"}[code]
        )


@pytest.mark.parametrize(
    ("registration", "field"),
    [
        ({"state": "XX"}, "tenant.policy.registrations[0].state"),
        ({"state": "FL", "expires": "2027-13-01"}, "tenant.policy.registrations[0].expires"),
        (
            {"state": "FL", "expires": "\uff12\uff10\uff12\uff17-06-30"},
            "tenant.policy.registrations[0].expires",
        ),
    ],
)
def test_a_bad_registration_is_refused_and_nothing_stored(
    admin: tenants_pb2_grpc.TenantAdminServiceStub, registration: dict[str, str], field: str
) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    tenant = tenant_pb2.Tenant(
        name=name,
        policy=tenant_pb2.TenantPolicy(registrations=[tenant_pb2.StateRegistration(**registration)]),
    )
    with pytest.raises(grpc.RpcError) as err:
        admin.ApplyTenant(tenants_pb2.ApplyTenantRequest(tenant=tenant))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(err.value)[0][0] == field
    with pytest.raises(grpc.RpcError) as missing:
        admin.GetTenant(tenants_pb2.GetTenantRequest(name=name))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # The spec the CLI and operator build from refuses a lower-case or unknown code up front.
    with pytest.raises(ValidationError):
        TenantSpec.model_validate({"policy": {"registrations": [{"state": "fl"}]}})

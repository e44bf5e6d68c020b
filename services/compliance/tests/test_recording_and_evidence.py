"""Recording by setting and state (recording.py through the engine) and consent evidence (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leadflow.v1 import lead_pb2
from leadflow_compliance.consent_evidence import missing_evidence
from leadflow_compliance.engine import Facts, evaluate
from leadflow_compliance.phone import analyse
from leadflow_compliance.rule_table import default_table
from leadflow_core.timestamps import to_proto

TABLE = default_table()
NOW = datetime(2026, 11, 18, 17, 0, tzinfo=UTC)
NY = "+12125550100"  # one-party
FL = "+13055550100"  # all-party
CA = "+14155550100"  # all-party
TORONTO = "+14165550100"  # no US state


@pytest.mark.parametrize(
    ("setting", "callee", "caller", "allowed", "announce"),
    [
        # never: nothing is recorded anywhere (the announcement flag still says what the law needs).
        ("never", NY, "NY", False, False),
        ("never", FL, "NY", False, True),
        ("", NY, "NY", False, False),
        # one-party states only: on only where both parties are one-party and known.
        ("one_party_states_only", NY, "NY", True, False),
        ("one_party_states_only", FL, "NY", False, True),
        ("one_party_states_only", NY, "CA", False, True),
        ("one_party_states_only", NY, None, False, True),
        ("one_party_states_only", TORONTO, "NY", False, True),
        # always with announcement: on everywhere, always announced.
        ("always_with_announcement", NY, "NY", True, True),
        ("always_with_announcement", CA, "FL", True, True),
        ("always_with_announcement", TORONTO, None, True, True),
    ],
)
def test_recording_decision_per_setting_and_state(
    setting: str, callee: str, caller: str | None, allowed: bool, announce: bool
) -> None:
    facts = Facts(
        now=NOW, phone=analyse(callee), consent_at=NOW, recording_setting=setting, caller_state=caller
    )
    verdict = evaluate(facts, TABLE)
    assert (verdict.recording_allowed, verdict.recording_disclosure_required) == (allowed, announce)
    assert verdict.recording_reason
    if callee == FL:
        assert "callee in FL" in verdict.recording_reason
    if caller == "CA":
        assert "caller in CA" in verdict.recording_reason


def test_the_callees_address_state_counts_too() -> None:
    facts = Facts(
        now=NOW, phone=analyse(NY), address_state="MD", consent_at=NOW,
        recording_setting="one_party_states_only", caller_state="NY",
    )  # fmt: skip
    verdict = evaluate(facts, TABLE)
    assert not verdict.recording_allowed
    assert "callee in MD" in verdict.recording_reason


def _evidence(**kw: object) -> lead_pb2.ConsentEvidence:
    base: dict[str, object] = {
        "granted": True,
        "disclosure_text": "I agree ACME may call me with an autodialer",
        "seller": "acme",
        "consented_at": to_proto(NOW),
        "trustedform_cert_url": "https://cert.trustedform.com/abc",
    }
    base.update(kw)
    return lead_pb2.ConsentEvidence(**base)  # type: ignore[arg-type]


def test_complete_evidence_is_verified_with_any_reference() -> None:
    assert missing_evidence(_evidence()) == ()
    assert missing_evidence(_evidence(trustedform_cert_url="", jornaya_leadid="x" * 36)) == ()
    assert missing_evidence(_evidence(trustedform_cert_url="", form_submission_id="sub-1")) == ()
    assert missing_evidence(_evidence(disclosure_text="", disclosure_version="tcpa-v3")) == ()


def test_each_missing_piece_is_named() -> None:
    bare = lead_pb2.ConsentEvidence(granted=True, disclosure_text="I agree")
    assert missing_evidence(bare) == (
        "seller",
        "time of consent",
        "evidence reference (TrustedForm, Jornaya LeadiD or form submission)",
    )
    assert missing_evidence(_evidence(disclosure_text="")) == ("disclosure text or version",)


def test_unverified_consent_is_never_auto_dialed_and_says_why() -> None:
    facts = Facts(now=NOW, phone=analyse(NY), consent_unverified=("seller",))
    verdict = evaluate(facts, TABLE)
    assert verdict.action == "never"
    (reason,) = [r for r in verdict.reasons if r.rule_id == "consent.unverified"]
    assert "seller" in reason.message
    assert verdict.consent_status == "unverified"

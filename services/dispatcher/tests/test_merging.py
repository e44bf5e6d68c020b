"""Merging a repeat lead into the stored one: newer fields win, the earliest consent evidence stays."""

from __future__ import annotations

from datetime import UTC, datetime

from leadflow.v1 import lead_pb2
from leadflow_core.timestamps import to_proto
from leadflow_dispatcher.merging import merge_leads
from leadflow_dispatcher.persons import PersonKeys


def lead(first: str = "", message: str = "", consent_hour: int | None = None, **kw: object) -> lead_pb2.Lead:
    out = lead_pb2.Lead(tenant="t", lead_id="L1", message=message, **kw)  # type: ignore[arg-type]
    out.contact.first_name = first
    if consent_hour is not None:
        out.consent.granted = True
        out.consent.consented_at.CopyFrom(to_proto(datetime(2026, 11, 30, consent_hour, tzinfo=UTC)))
        out.consent.seller = f"seller-{consent_hour}"
        out.consent.form_submission_id = f"form:{consent_hour}"
    return out


def test_newer_fields_win_and_empty_ones_do_not_erase() -> None:
    stored = lead("Ada", "furnace", consent_hour=10)
    stored.custom_fields.update({"a": "1", "b": "1"})
    newer = lead("Adeline", "")
    newer.custom_fields.update({"b": "2"})
    merged = merge_leads(stored, newer)
    assert (merged.lead.contact.first_name, merged.lead.message) == ("Adeline", "furnace")
    assert dict(merged.lead.custom_fields) == {"a": "1", "b": "2"}
    assert merged.lead.lead_id == "L1"
    assert "contact.first_name" in merged.changed
    assert merged.consent == "kept"


def test_the_earliest_consent_evidence_is_kept_whole() -> None:
    assert merge_leads(lead(consent_hour=10), lead(consent_hour=11)).lead.consent.seller == "seller-10"
    earlier = merge_leads(lead(consent_hour=11), lead(consent_hour=9))
    assert (earlier.lead.consent.seller, earlier.consent) == ("seller-9", "replaced")
    # Evidence where there was none is taken; none never replaces evidence.
    assert merge_leads(lead(), lead(consent_hour=12)).lead.consent.seller == "seller-12"
    assert merge_leads(lead(consent_hour=12), lead()).lead.consent.seller == "seller-12"


def test_proof_beats_an_earlier_bare_claim() -> None:
    claim = lead(consent_hour=8)
    claim.consent.ClearField("form_submission_id")
    proven = lead(consent_hour=12)
    merged = merge_leads(claim, proven)
    assert (merged.lead.consent.seller, merged.consent) == ("seller-12", "replaced")
    assert merge_leads(proven, claim).lead.consent.seller == "seller-12"


def test_an_older_vendor_stamp_does_not_overwrite() -> None:
    stored = lead("New")
    stored.vendor_updated_at.CopyFrom(to_proto(datetime(2026, 11, 30, 12, tzinfo=UTC)))
    late_old = lead("Old")
    late_old.vendor_updated_at.CopyFrom(to_proto(datetime(2026, 11, 30, 8, tzinfo=UTC)))
    merged = merge_leads(stored, late_old)
    assert merged.lead.contact.first_name == "New"
    assert merged.lead.vendor_updated_at.ToDatetime(tzinfo=UTC).hour == 12


def test_order_key_is_per_person_and_campaign() -> None:
    ada = PersonKeys(phone="aaaa", email="bbbb")
    assert ada.order_key("spring") == PersonKeys(phone="cccc", email="bbbb").order_key("spring")
    assert ada.order_key("spring") != ada.order_key("fall")
    assert PersonKeys(phone="aaaa", email=None).order_key("spring") != ada.order_key("spring")
    assert PersonKeys(phone=None, email=None).order_key("spring") is None
    assert ada.lock_ids() == sorted(ada.lock_ids())
    assert len(ada.lock_ids()) == 2

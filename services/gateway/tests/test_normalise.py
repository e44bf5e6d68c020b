"""Normalisation to the one Lead message: names, E.164 phone, email, consent, urgency, field maps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leadflow.v1 import lead_pb2, tenant_pb2
from leadflow_gateway import urgency
from leadflow_gateway.body import parse_json
from leadflow_gateway.errors import GatewayError
from leadflow_gateway.fields import canonical_target, flatten, map_fields
from leadflow_gateway.normalise import Envelope, build_lead, normalise_phone, parse_instant

US = tenant_pb2.TenantPolicy(default_region="US")


def env(**kw: object) -> Envelope:
    base = Envelope(
        tenant="acme", source=lead_pb2.SOURCE_FORM, received_at=datetime(2026, 1, 5, 15, tzinfo=UTC)
    )
    for k, v in kw.items():
        setattr(base, k, v)
    return base


def lead_from(
    items: dict[str, str], strict: bool = True, policy: tenant_pb2.TenantPolicy = US, **kw: object
) -> lead_pb2.Lead:
    return build_lead(map_fields(items.items(), {}, {}), env(**kw), policy, strict=strict)


def test_names_split_and_joined() -> None:
    a = lead_from({"name": "Ada  King Lovelace", "phone": "305-555-0123"})
    assert (a.contact.first_name, a.contact.last_name, a.contact.full_name) == (
        "Ada",
        "King Lovelace",
        "Ada  King Lovelace",
    )
    b = lead_from({"first_name": "Grace", "last_name": "Hopper", "phone": "305-555-0123"})
    assert b.contact.full_name == "Grace Hopper"


def test_phone_to_e164_with_tenant_region_and_line_type() -> None:
    lead = lead_from({"phone": "(305) 555-0123"})
    assert lead.contact.phone.e164 == "+13055550123"
    assert lead.contact.phone.raw == "(305) 555-0123"
    assert lead.contact.phone.region == "US"
    assert lead.contact.phone.line_type == lead_pb2.LINE_TYPE_FIXED_LINE_OR_MOBILE
    uk = lead_from({"phone": "07400 123456"}, policy=tenant_pb2.TenantPolicy(default_region="GB"))
    assert uk.contact.phone.e164 == "+447400123456"
    assert uk.contact.phone.line_type == lead_pb2.LINE_TYPE_MOBILE
    # An explicit country code wins over the default region.
    assert normalise_phone("+44 7400 123456", "US") is not None


def test_bad_values_name_the_sender_field_when_strict() -> None:
    with pytest.raises(GatewayError) as err:
        lead_from({"Telephone": "12"})
    assert (err.value.status, err.value.field) == (400, "Telephone")
    with pytest.raises(GatewayError) as err:
        lead_from({"phone": "3055550123", "email": "not-an-email"})
    assert err.value.field == "email"
    with pytest.raises(GatewayError) as err:
        lead_from({"email": "a@example.com"})
    assert err.value.field == "phone"
    with pytest.raises(GatewayError) as err:
        lead_from({"phone": "3055550123", "urgency": "whenever"})
    assert err.value.field == "urgency"


def test_vendor_leads_are_kept_when_a_value_is_bad() -> None:
    lead = lead_from({"phone": "call me", "email": "nope"}, strict=False)
    assert lead.contact.phone.e164 == ""
    assert lead.contact.phone.raw == "call me"
    assert lead.contact.email == ""


def test_email_normalised() -> None:
    assert (
        lead_from({"phone": "3055550123", "email": "  Ada.L@Example.COM "}).contact.email
        == "ada.l@example.com"
    )


def test_consent_evidence_kept_whole() -> None:
    lead = lead_from(
        {
            "phone": "3055550123",
            "consent": "on",
            "consent_text": "By checking this box I agree to be called ...",
            "xxTrustedFormCertUrl": "https://cert.trustedform.com/0123456789abcdef",
            "universal_leadid": "12345678-1234-1234-1234-123456789012",
        },
        client_ip="203.0.113.9",
        user_agent="Mozilla/5.0",
        page_url="https://acme.example/quote",
    )
    c = lead.consent
    assert c.granted
    assert c.disclosure_text.startswith("By checking this box")
    assert c.trustedform_cert_url == "https://cert.trustedform.com/0123456789abcdef"
    assert c.jornaya_leadid == "12345678-1234-1234-1234-123456789012"
    assert (c.ip, c.user_agent, c.page_url) == ("203.0.113.9", "Mozilla/5.0", "https://acme.example/quote")
    assert c.consented_at.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 5, 15, tzinfo=UTC)
    assert not lead_from({"phone": "3055550123"}).consent.granted


def test_urgency_explicit_then_words_then_tenant_rules() -> None:
    assert (
        lead_from({"phone": "3055550123", "urgency": "LOW", "message": "no heat"}).urgency
        == lead_pb2.URGENCY_LOW
    )
    assert (
        lead_from({"phone": "3055550123", "message": "We have NO  heat since last night"}).urgency
        == lead_pb2.URGENCY_EMERGENCY
    )
    assert lead_from({"phone": "3055550123", "message": "I smell gas"}).urgency == lead_pb2.URGENCY_EMERGENCY
    assert lead_from({"phone": "3055550123", "service": "gas smell"}).urgency == lead_pb2.URGENCY_EMERGENCY
    assert (
        lead_from({"phone": "3055550123", "message": "just a quote please"}).urgency == lead_pb2.URGENCY_LOW
    )
    assert (
        lead_from({"phone": "3055550123", "message": "piano heater tuning"}).urgency
        == lead_pb2.URGENCY_MEDIUM
    )
    policy = tenant_pb2.TenantPolicy(
        default_region="US",
        urgency_rules=[tenant_pb2.UrgencyRule(pattern="pool pump", urgency=lead_pb2.URGENCY_HIGH)],
    )
    assert (
        lead_from({"phone": "3055550123", "message": "Pool pump died"}, policy=policy).urgency
        == lead_pb2.URGENCY_HIGH
    )
    assert urgency.classify([""]) == lead_pb2.URGENCY_MEDIUM


def test_default_rules_are_data() -> None:
    phrases = {r.pattern for r in urgency.default_rules()}
    assert {"no heat", "flooding", "gas smell"} <= phrases


def test_tenant_field_map_and_custom_fields() -> None:
    mapped = map_fields(
        [("Cell", "305 555 0123"), ("Zap ID", "z-1"), ("Budget", "5000"), ("secret_note", "x")],
        {},
        {
            "Cell": "contact.phone",
            "Zap ID": "vendor_lead_id",
            "Budget": "custom_fields.budget",
            "secret_note": "ignore",
        },
    )
    lead = build_lead(mapped, env(), US, strict=True)
    assert lead.contact.phone.e164 == "+13055550123"
    assert lead.vendor_lead_id == "z-1"
    assert dict(lead.custom_fields) == {"budget": "5000"}
    assert canonical_target("contact.address.city") == "city"
    assert canonical_target("nonsense") is None


def test_flatten_nested_json() -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": True}) == [
        ("a.b", "1"),
        ("a.c", "1, 2"),
        ("d", ""),
        ("e", "true"),
    ]


def test_parse_instant() -> None:
    assert parse_instant("2024-03-01T10:00:00+0000") == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert parse_instant("2024-03-01T10:00:00Z") == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert parse_instant("1700000000000") == datetime.fromtimestamp(1700000000, UTC)
    assert parse_instant("yesterday") is None


# ---- ASCII-only digits and control-free ids (issue 11) ------------------------------------------

NON_ASCII_DIGITS = ["\u00b2", "\u0663", "\uff11", "\u09ea", "\u07c0"]


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
def test_only_ascii_digits_are_digits(digit: str) -> None:
    assert normalise_phone(f"+1212555017{digit}", "US") is None
    assert parse_instant(f"170000000{digit}") is None
    assert parse_instant(f"2024-03-0{digit}T10:00:00+0000") is None
    with pytest.raises(GatewayError) as err:
        lead_from({"phone": f"(212) 555-017{digit}"})
    assert (err.value.status, err.value.field) == (400, "phone")
    # A vendor's lead keeps the raw value but no dialable number.
    assert (
        lead_from({"phone": f"212555017{digit}", "email": "a@example.com"}, strict=False).contact.phone.e164
        == ""
    )


@pytest.mark.parametrize("control", ["\x00", "\x01", "\x1b", "\x7f", "\x85"])
def test_control_characters_in_ids_are_refused_naming_the_field(control: str) -> None:
    for items, kw, field in (
        ({"phone": "2125550170"}, {"vendor_lead_id": f"v{control}1"}, "vendor_lead_id"),
        ({"phone": "2125550170", "campaign": f"c{control}"}, {}, "campaign"),
        ({"phone": "2125550170", "utm_campaign": f"c{control}"}, {}, "utm_campaign"),
        ({"phone": "2125550170"}, {"idempotency_key": f"k{control}"}, "Idempotency-Key"),
        (
            {"phone": "2125550170"},
            {"vendor_lead_id": f"g{control}", "vendor_lead_id_field": "lead_id"},
            "lead_id",
        ),
    ):
        with pytest.raises(GatewayError) as err:
            build_lead(map_fields(items.items(), {}, {}), env(**kw), US, strict=True)
        assert (err.value.status, err.value.field) == (400, field)
    # In any field, from any sender: a 400 naming it (before: a vendor's lead kept, emptied).
    for strict in (True, False):
        with pytest.raises(GatewayError) as err:
            lead_from({"phone": "2125550170", "email": f"a{control}@example.com"}, strict=strict)
        assert (err.value.status, err.value.field) == (400, "email")


def test_campaign_from_the_body_or_the_envelope() -> None:
    assert lead_from({"phone": "2125550170", "campaign_id": " spring "}).campaign == "spring"
    assert lead_from({"phone": "2125550170"}, campaign="7654321").campaign == "7654321"


def test_json_with_an_unpaired_surrogate_escape_is_a_400() -> None:
    for body in (b'{"phone": "\\ud800"}', b'{"\\udfff": "x"}', b'["a", {"b": "\\udbff"}]'):
        with pytest.raises(GatewayError) as err:
            parse_json(body)
        assert (err.value.status, err.value.field) == (400, "body")
    # A proper pair is one character, and kept.
    assert parse_json(b'{"n": "\\ud83d\\ude00"}') == {"n": "\U0001f600"}

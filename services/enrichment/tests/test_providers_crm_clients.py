"""The Salesforce and HubSpot clients against their fakes: upserts and every failure class."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from leadflow_enrichment.failures import ErrorClass, ProviderError
from leadflow_enrichment.providers.base import Enrichment, LeadView
from leadflow_enrichment.providers.hubspot import HubSpotCrm
from leadflow_enrichment.providers.salesforce import SalesforceCrm
from tests.fakes.hubspot import HubSpotFake
from tests.fakes.salesforce import SalesforceFake

LEAD = LeadView(
    tenant="acme",
    lead_id="lead-42",
    source="form",
    first_name="Ada",
    last_name="Lovelace",
    email="Ada@Example.com",
    phone_e164="+13055550123",
    state="FL",
    postal_code="33101",
    message="need a quote today",
)
SF_TOKEN = "sf-token"
HS_TOKEN = "hs-token"
ENRICHMENT = Enrichment(intent="high", fit_score=81, reasons=("pricing",), model="rules")


@pytest.fixture
def salesforce() -> Iterator[SalesforceFake]:
    with SalesforceFake(access_token="sf-token") as fake:
        yield fake


@pytest.fixture
def hubspot() -> Iterator[HubSpotFake]:
    with HubSpotFake(access_token="hs-token") as fake:
        yield fake


def sf_client(fake: SalesforceFake, token: str = SF_TOKEN, timeout: float = 5.0) -> SalesforceCrm:
    return SalesforceCrm(
        instance_url=fake.url,
        access_token=token,
        fit_field="Fit__c",
        intent_field="Intent__c",
        timeout=timeout,
    )


def hs_client(fake: HubSpotFake, token: str = HS_TOKEN, timeout: float = 5.0) -> HubSpotCrm:
    return HubSpotCrm(access_token=token, base_url=fake.url, fit_property="leadflow_fit", timeout=timeout)


# --- Salesforce --------------------------------------------------------------------------------


def test_salesforce_upsert_creates_then_updates(salesforce: SalesforceFake) -> None:
    client = sf_client(salesforce)
    first = client.upsert_lead(LEAD, ENRICHMENT)
    assert first.created
    assert first.external_id.startswith("00Q")
    second = client.upsert_lead(LEAD, None)
    assert not second.created
    assert second.external_id == first.external_id
    (request, _) = salesforce.requests_to("/sobjects/Lead/", "PATCH")
    assert request.path == "/services/data/v61.0/sobjects/Lead/Leadflow_Id__c/lead-42"
    assert request.headers["authorization"] == "Bearer sf-token"
    record = salesforce.lead("lead-42")
    assert record["LastName"] == "Lovelace"
    assert record["Company"] == "[not provided]"  # required by Salesforce, absent on the form
    assert record["Fit__c"] == 81
    assert record["Intent__c"] == "high"
    client.close()


def test_salesforce_expired_token_is_external(salesforce: SalesforceFake) -> None:
    client = sf_client(salesforce, token="expired")
    with pytest.raises(ProviderError) as err:
        client.upsert_lead(LEAD, None)
    assert err.value.error_class is ErrorClass.EXTERNAL
    assert err.value.status == 401
    client.close()


def test_salesforce_daily_limit_is_rate_limited(salesforce: SalesforceFake) -> None:
    salesforce.limit_exceeded()
    client = sf_client(salesforce)
    with pytest.raises(ProviderError) as err:
        client.upsert_lead(LEAD, None)
    assert err.value.error_class is ErrorClass.RATE_LIMITED
    assert err.value.retry_after is not None
    assert err.value.retry_after > 0
    assert client.upsert_lead(LEAD, None).created
    client.close()


def test_salesforce_429_honours_retry_after_date(salesforce: SalesforceFake) -> None:
    salesforce.fail(status=429, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
    client = sf_client(salesforce)
    with pytest.raises(ProviderError) as err:
        client.upsert_lead(LEAD, None)
    assert err.value.error_class is ErrorClass.RATE_LIMITED
    assert err.value.retry_after == 3600.0  # far-future dates are capped
    client.close()


def test_salesforce_server_error_and_timeout_are_temporary(salesforce: SalesforceFake) -> None:
    salesforce.fail(status=503)
    client = sf_client(salesforce, timeout=0.3)
    with pytest.raises(ProviderError) as err:
        client.upsert_lead(LEAD, None)
    assert err.value.error_class is ErrorClass.TEMPORARY
    salesforce.stall(seconds=5)
    with pytest.raises(ProviderError) as err:
        client.upsert_lead(LEAD, None)
    assert err.value.error_class is ErrorClass.TEMPORARY
    client.close()


def test_salesforce_rejected_fields_are_validation(salesforce: SalesforceFake) -> None:
    salesforce.fail(
        status=400,
        body=[{"message": "invalid email", "errorCode": "INVALID_EMAIL_ADDRESS", "fields": ["Email"]}],
    )
    client = sf_client(salesforce)
    with pytest.raises(ProviderError) as err:
        client.upsert_lead(LEAD, None)
    assert err.value.error_class is ErrorClass.VALIDATION
    assert "INVALID_EMAIL_ADDRESS" in str(err.value)
    client.close()


def test_salesforce_row_lock_is_temporary(salesforce: SalesforceFake) -> None:
    salesforce.fail(status=400, body=[{"message": "locked", "errorCode": "UNABLE_TO_LOCK_ROW", "fields": []}])
    client = sf_client(salesforce)
    with pytest.raises(ProviderError) as err:
        client.upsert_lead(LEAD, None)
    assert err.value.error_class is ErrorClass.TEMPORARY
    client.close()


def test_salesforce_find_lead_by_external_id(salesforce: SalesforceFake) -> None:
    client = sf_client(salesforce)
    assert client.find_lead(LEAD) is None
    made = client.upsert_lead(LEAD, None)
    found = client.find_lead(LEAD)
    assert found is not None
    assert found.external_id == made.external_id
    (read,) = salesforce.requests_to("/sobjects/Lead/", "GET")[-1:]
    assert read.path == "/services/data/v61.0/sobjects/Lead/Leadflow_Id__c/lead-42"
    client.close()


def test_salesforce_write_whose_answer_is_lost_leaves_one_record(salesforce: SalesforceFake) -> None:
    client = sf_client(salesforce, timeout=0.5)
    salesforce.stall(seconds=3, after_effect=True)
    with pytest.raises(ProviderError) as err:
        client.upsert_lead(LEAD, None)
    assert err.value.error_class is ErrorClass.TEMPORARY
    assert salesforce.writes["lead-42"] == 1  # it landed; only the answer was lost
    assert client.find_lead(LEAD) is not None
    assert not client.upsert_lead(LEAD, None).created
    assert salesforce.records_with("lead-42") == 1
    client.close()


# --- HubSpot -----------------------------------------------------------------------------------


def test_hubspot_batch_upsert_by_the_lead_id_property(hubspot: HubSpotFake) -> None:
    client = hs_client(hubspot)
    assert client.find_lead(LEAD) is None
    first = client.upsert_lead(LEAD, ENRICHMENT)
    assert first.created
    second = client.upsert_lead(LEAD, None)
    assert not second.created
    assert second.external_id == first.external_id
    body = hubspot.requests_to("/batch/upsert", "POST")[0].json()
    (item,) = body["inputs"]
    assert item["idProperty"] == "leadflow_lead_id"
    assert item["id"] == "lead-42"
    assert item["properties"]["email"] == "ada@example.com"
    assert item["properties"]["leadflow_fit"] == "81"
    assert hubspot.contacts["ada@example.com"]["properties"]["zip"] == "33101"
    assert hubspot.contacts_with("leadflow_lead_id", "lead-42") == 1
    assert hubspot.writes[("leadflow_lead_id", "lead-42")] == 2
    found = client.find_lead(LEAD)
    assert found is not None
    assert found.external_id == first.external_id
    (read,) = hubspot.requests_to("/crm/v3/objects/contacts/lead-42", "GET")[-1:]
    assert read.query["idProperty"] == ["leadflow_lead_id"]
    client.close()


def test_hubspot_second_lead_of_a_known_email_updates_that_contact(hubspot: HubSpotFake) -> None:
    client = hs_client(hubspot)
    first = client.upsert_lead(LEAD, None)
    later = LeadView(tenant="acme", lead_id="lead-43", source="api", email="ada@example.com")
    joined = client.upsert_lead(later, None)
    assert (joined.external_id, joined.created) == (first.external_id, False)
    assert len(hubspot.records) == 1
    # The contact now carries the newer lead's id, so that lead's retry finds its write.
    found = client.find_lead(later)
    assert found is not None
    assert found.external_id == first.external_id
    client.close()


def test_hubspot_write_whose_answer_is_lost_is_found_not_repeated(hubspot: HubSpotFake) -> None:
    client = hs_client(hubspot, timeout=0.5)
    hubspot.fail(status=500, after_effect=True)
    with pytest.raises(ProviderError) as err:
        client.upsert_lead(LEAD, None)
    assert err.value.error_class is ErrorClass.TEMPORARY
    hubspot.stall(seconds=3, after_effect=True)
    with pytest.raises(ProviderError):
        client.upsert_lead(LEAD, None)
    found = client.find_lead(LEAD)
    assert found is not None
    assert hubspot.contacts_with("leadflow_lead_id", "lead-42") == 1
    client.close()


def test_hubspot_429_carries_retry_after(hubspot: HubSpotFake) -> None:
    hubspot.fail(times=2, status=429, headers={"Retry-After": "2"})
    client = hs_client(hubspot)
    for _ in range(2):
        with pytest.raises(ProviderError) as err:
            client.upsert_lead(LEAD, None)
        assert err.value.error_class is ErrorClass.RATE_LIMITED
        assert err.value.retry_after == 2.0
    assert client.upsert_lead(LEAD, None).created
    client.close()


def test_hubspot_server_error_and_timeout_are_temporary(hubspot: HubSpotFake) -> None:
    hubspot.fail(status=502)
    client = hs_client(hubspot, timeout=0.3)
    with pytest.raises(ProviderError) as err:
        client.upsert_lead(LEAD, None)
    assert err.value.error_class is ErrorClass.TEMPORARY
    hubspot.stall(seconds=5)
    with pytest.raises(ProviderError) as err:
        client.upsert_lead(LEAD, None)
    assert err.value.error_class is ErrorClass.TEMPORARY
    client.close()


def test_hubspot_bad_token_is_external(hubspot: HubSpotFake) -> None:
    client = hs_client(hubspot, token="nope")
    with pytest.raises(ProviderError) as err:
        client.upsert_lead(LEAD, None)
    assert err.value.error_class is ErrorClass.EXTERNAL
    client.close()


def test_hubspot_rejected_contact_is_validation(hubspot: HubSpotFake) -> None:
    client = hs_client(hubspot)
    with pytest.raises(ProviderError) as err:
        client.upsert_lead(LeadView(tenant="acme", lead_id="x", source="form", email="not-an-email"), None)
    assert err.value.error_class is ErrorClass.VALIDATION
    assert err.value.status == 207
    # No email is no obstacle: the contact is keyed by the lead id.
    assert client.upsert_lead(
        LeadView(tenant="acme", lead_id="y", source="form", phone_e164="+13055550123"), None
    ).created
    client.close()


def test_hubspot_429_without_retry_after_waits_out_the_policy_window(hubspot: HubSpotFake) -> None:
    hubspot.fail(status=429)  # the fake's body names the SECONDLY policy, no header
    hubspot.fail(status=429, body={"status": "error", "category": "RATE_LIMITS", "policyName": "DAILY"})
    client = hs_client(hubspot)
    waits = []
    for _ in range(2):
        with pytest.raises(ProviderError) as err:
            client.upsert_lead(LEAD, None)
        assert err.value.error_class is ErrorClass.RATE_LIMITED
        waits.append(err.value.retry_after)
    assert waits == [1.0, 3600.0]
    client.close()

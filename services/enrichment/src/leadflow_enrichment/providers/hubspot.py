"""HubSpot CRM v3: batch upsert of contacts by our lead id, with a private-app bearer token.

The lead id lives in a contact property created with `hasUniqueValue: true` (option
`lead_id_property`, default `leadflow_lead_id`), so a retried upsert finds the contact it made
and never creates a second. HubSpot keeps email unique as well: when another lead of the same
person already made the contact, the upsert goes by email and the contact takes this lead's id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from leadflow_core.logs import get_logger
from leadflow_enrichment.failures import ErrorClass, ProviderError
from leadflow_enrichment.providers.base import CrmResult, Enrichment, LeadView
from leadflow_enrichment.providers.credentials import required
from leadflow_enrichment.providers.http_errors import (
    check_base_url,
    error_for_response,
    make_client,
    transport_errors,
)
from leadflow_enrichment.providers.settings import ProviderSettings

log = get_logger(__name__)

UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
CONTACT_PATH = "/crm/v3/objects/contacts/"
DEFAULT_LEAD_ID_PROPERTY = "leadflow_lead_id"
# HubSpot's rate-limit policies (`policyName` in a 429 body) and how long each window lasts.
_POLICY_WINDOW_SECONDS = {"SECONDLY": 1.0, "TEN_SECONDLY_ROLLING": 10.0, "DAILY": 3600.0}


class HubSpotCrm:
    """Implements `Crm` with `POST /crm/v3/objects/contacts/batch/upsert` (idProperty: the lead id
    property) and `GET /crm/v3/objects/contacts/{lead id}?idProperty=...`."""

    name = "hubspot"

    def __init__(
        self,
        *,
        access_token: str,
        base_url: str = "https://api.hubapi.com",
        fit_property: str = "",
        intent_property: str = "",
        lead_id_property: str = DEFAULT_LEAD_ID_PROPERTY,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
    ) -> None:
        self.base_url = check_base_url(base_url, self.name)
        self.fit_property = fit_property
        self.intent_property = intent_property
        self.lead_id_property = lead_id_property or DEFAULT_LEAD_ID_PROPERTY
        self._headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        self._client = make_client(connect_timeout, timeout)

    @classmethod
    def from_config(
        cls, settings: ProviderSettings, secrets: Mapping[str, str], options: Mapping[str, str]
    ) -> HubSpotCrm:
        return cls(
            access_token=required(secrets, "access_token", cls.name, "secret"),
            base_url=options.get("base_url") or settings.hubspot_base_url,
            fit_property=options.get("fit_property", ""),
            intent_property=options.get("intent_property", ""),
            lead_id_property=options.get("lead_id_property") or DEFAULT_LEAD_ID_PROPERTY,
            timeout=settings.provider_timeout_seconds,
            connect_timeout=settings.provider_connect_timeout_seconds,
        )

    def contact_properties(self, lead: LeadView, enrichment: Enrichment | None) -> dict[str, str]:
        props = {
            "email": lead.email.strip().lower(),
            "firstname": lead.first_name,
            "lastname": lead.last_name,
            "phone": lead.phone_e164,
            "state": lead.state,
            "zip": lead.postal_code,
        }
        props[self.lead_id_property] = lead.lead_id
        if enrichment is not None:
            if self.fit_property:
                props[self.fit_property] = str(enrichment.fit_score)
            if self.intent_property:
                props[self.intent_property] = enrichment.intent
        # Empty values would erase what HubSpot already knows about the person.
        return {k: v for k, v in props.items() if v}

    def find_lead(self, lead: LeadView) -> CrmResult | None:
        """The contact holding this lead's id, if an earlier try made it (None: no such contact)."""
        url = f"{self.base_url}{CONTACT_PATH}{quote(lead.lead_id, safe='')}"
        with transport_errors(self.name):
            response = self._client.get(
                url, params={"idProperty": self.lead_id_property}, headers=self._headers
            )
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise self._error(response)
        record_id = str(_json(response, self.name).get("id", ""))
        if not record_id:
            raise ProviderError(
                "hubspot answered without a contact id", ErrorClass.TEMPORARY, provider=self.name
            )
        return CrmResult(external_id=record_id, created=False)

    def upsert_lead(self, lead: LeadView, enrichment: Enrichment | None) -> CrmResult:
        properties = self.contact_properties(lead, enrichment)
        response = self._upsert(self.lead_id_property, lead.lead_id, properties)
        email = properties.get("email", "")
        if response.status_code == 409 and email:
            # Another lead of this person made the contact (email is unique too): update that
            # one, which takes this lead's id, so a retry of this lead finds it.
            response = self._upsert("email", email, properties)
        if not response.is_success:
            raise self._error(response)
        body = _json(response, self.name)
        results = body.get("results")
        errors = body.get("errors") or []
        if response.status_code == 207 or not isinstance(results, list) or not results:
            # 207: the batch partly failed; with one input, that input failed.
            categories = sorted({str(e.get("category", "")) for e in errors if isinstance(e, dict)})
            raise ProviderError(
                f"hubspot rejected the contact ({','.join(categories) or 'no result'})",
                ErrorClass.VALIDATION,
                provider=self.name,
                status=response.status_code,
            )
        first = results[0] if isinstance(results[0], dict) else {}
        record_id = str(first.get("id", ""))
        if not record_id:
            raise ProviderError(
                "hubspot answered without a contact id", ErrorClass.TEMPORARY, provider=self.name
            )
        created = bool(first.get("new", False))
        log.info("hubspot contact upserted", lead_id=lead.lead_id, created=created)
        return CrmResult(external_id=record_id, created=created)

    def _upsert(self, id_property: str, value: str, properties: dict[str, str]) -> httpx.Response:
        payload = {"inputs": [{"idProperty": id_property, "id": value, "properties": properties}]}
        with transport_errors(self.name):
            return self._client.post(self.base_url + UPSERT_PATH, json=payload, headers=self._headers)

    def _error(self, response: httpx.Response) -> ProviderError:
        category = policy = ""
        try:
            body = response.json()
            if isinstance(body, dict):
                category = str(body.get("category") or body.get("errorType") or "")
                policy = str(body.get("policyName") or "")
        except ValueError:
            # A non-JSON error body still has its status code to classify it by.
            category = policy = ""
        error = error_for_response(response, self.name, category)
        if category in ("RATE_LIMITS", "RATE_LIMIT"):
            error.error_class = ErrorClass.RATE_LIMITED
        if error.error_class is ErrorClass.RATE_LIMITED and error.retry_after is None:
            # No Retry-After: wait out the window the policy names.
            error.retry_after = _POLICY_WINDOW_SECONDS.get(policy, 10.0)
        return error

    def close(self) -> None:
        self._client.close()


def _json(response: httpx.Response, provider: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as err:
        raise ProviderError(
            f"{provider} answered with invalid JSON", ErrorClass.TEMPORARY, provider=provider
        ) from err
    if not isinstance(body, dict):
        raise ProviderError(
            f"{provider} answered with unexpected JSON", ErrorClass.TEMPORARY, provider=provider
        )
    return body

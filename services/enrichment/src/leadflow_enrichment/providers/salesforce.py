"""Salesforce REST: upsert a Lead by an external id field, with an OAuth bearer token."""

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

# Daily API limits reset on a rolling 24 h window: wait a while rather than hammering.
REQUEST_LIMIT_RETRY_AFTER = 900.0
# errorCodes (from the JSON error list) that mean "try again later", not "your data is wrong".
_TEMPORARY_CODES = frozenset(
    {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG", "QUERY_TIMEOUT"}
)
_AUTH_CODES = frozenset(
    {"INVALID_SESSION_ID", "INVALID_AUTH_HEADER", "API_DISABLED_FOR_ORG", "INSUFFICIENT_ACCESS"}
)


class SalesforceCrm:
    """Implements `Crm` with `PATCH /services/data/vXX.X/sobjects/Lead/{ExternalIdField}/{value}`."""

    name = "salesforce"

    def __init__(
        self,
        *,
        instance_url: str,
        access_token: str,
        api_version: str = "v61.0",
        external_id_field: str = "Leadflow_Id__c",
        default_company: str = "[not provided]",
        fit_field: str = "",
        intent_field: str = "",
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
    ) -> None:
        self.instance_url = check_base_url(instance_url, self.name)
        self.api_version = api_version if api_version.startswith("v") else f"v{api_version}"
        self.external_id_field = external_id_field
        self.default_company = default_company
        self.fit_field = fit_field
        self.intent_field = intent_field
        self._headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        self._client = make_client(connect_timeout, timeout)

    @classmethod
    def from_config(
        cls, settings: ProviderSettings, secrets: Mapping[str, str], options: Mapping[str, str]
    ) -> SalesforceCrm:
        return cls(
            instance_url=required(options, "instance_url", cls.name),
            access_token=required(secrets, "access_token", cls.name, "secret"),
            api_version=options.get("api_version") or settings.salesforce_api_version,
            external_id_field=options.get("external_id_field") or "Leadflow_Id__c",
            default_company=options.get("default_company") or "[not provided]",
            fit_field=options.get("fit_field", ""),
            intent_field=options.get("intent_field", ""),
            timeout=settings.provider_timeout_seconds,
            connect_timeout=settings.provider_connect_timeout_seconds,
        )

    def lead_fields(self, lead: LeadView, enrichment: Enrichment | None) -> dict[str, Any]:
        # LastName and Company are required on a Salesforce Lead; forms often lack both.
        fields: dict[str, Any] = {
            "LastName": lead.last_name or lead.first_name or "Unknown",
            "Company": lead.custom_fields.get("company") or self.default_company,
            "LeadSource": lead.source,
        }
        optional = {
            "FirstName": lead.first_name if lead.last_name else "",
            "Email": lead.email,
            "Phone": lead.phone_e164,
            "State": lead.state,
            "PostalCode": lead.postal_code,
            "Description": lead.message[:32000],
        }
        fields.update({k: v for k, v in optional.items() if v})
        if enrichment is not None:
            if self.fit_field:
                fields[self.fit_field] = enrichment.fit_score
            if self.intent_field:
                fields[self.intent_field] = enrichment.intent
        return fields

    def _url(self, lead: LeadView) -> str:
        return (
            f"{self.instance_url}/services/data/{self.api_version}/sobjects/Lead/"
            f"{quote(self.external_id_field, safe='')}/{quote(lead.lead_id, safe='')}"
        )

    def find_lead(self, lead: LeadView) -> CrmResult | None:
        """The Lead holding this lead's id in the external id field (None: no such record)."""
        with transport_errors(self.name):
            response = self._client.get(self._url(lead), params={"fields": "Id"}, headers=self._headers)
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise self._error(response)
        try:
            body = response.json()
        except ValueError as err:
            raise ProviderError(
                "salesforce answered with invalid JSON", ErrorClass.TEMPORARY, provider=self.name
            ) from err
        record_id = str(body.get("Id") or "") if isinstance(body, dict) else ""
        if not record_id:
            raise ProviderError(
                "salesforce answered without a record id", ErrorClass.TEMPORARY, provider=self.name
            )
        return CrmResult(external_id=record_id, created=False)

    def upsert_lead(self, lead: LeadView, enrichment: Enrichment | None) -> CrmResult:
        url = self._url(lead)
        with transport_errors(self.name):
            response = self._client.patch(url, json=self.lead_fields(lead, enrichment), headers=self._headers)
        if response.status_code == 204:
            # Older API versions answer an update with no body: the record exists, id unknown here.
            return CrmResult(external_id=lead.lead_id, created=False)
        if response.is_success:
            try:
                body = response.json()
            except ValueError as err:
                raise ProviderError(
                    "salesforce answered with invalid JSON", ErrorClass.TEMPORARY, provider=self.name
                ) from err
            if not isinstance(body, dict):
                raise ProviderError(
                    "salesforce answered with unexpected JSON", ErrorClass.TEMPORARY, provider=self.name
                )
            created = bool(body.get("created", response.status_code == 201))
            record_id = str(body.get("id") or lead.lead_id)
            log.info("salesforce lead upserted", lead_id=lead.lead_id, created=created)
            return CrmResult(external_id=record_id, created=created)
        raise self._error(response)

    def _error(self, response: httpx.Response) -> ProviderError:
        codes = _error_codes(response)
        detail = ",".join(sorted(codes))
        if response.status_code == 300:
            # Several records share the external id: a person has to merge them.
            return ProviderError(
                "salesforce: external id matches several leads",
                ErrorClass.VALIDATION,
                provider=self.name,
                status=300,
            )
        error = error_for_response(response, self.name, detail)
        if "REQUEST_LIMIT_EXCEEDED" in codes:
            error.error_class = ErrorClass.RATE_LIMITED
            if error.retry_after is None:
                error.retry_after = REQUEST_LIMIT_RETRY_AFTER
        elif codes & _AUTH_CODES or response.status_code == 401:
            error.error_class = ErrorClass.EXTERNAL  # the token expired or was revoked: re-authenticate
        elif codes & _TEMPORARY_CODES:
            error.error_class = ErrorClass.TEMPORARY
        return error

    def close(self) -> None:
        self._client.close()


def _error_codes(response: httpx.Response) -> set[str]:
    """Salesforce errors: [{"message": ..., "errorCode": "...", "fields": [...]}]."""
    try:
        body = response.json()
    except ValueError:
        return set()
    items = body if isinstance(body, list) else [body]
    return {str(item["errorCode"]) for item in items if isinstance(item, dict) and item.get("errorCode")}

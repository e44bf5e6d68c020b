"""Twilio Voice REST: create a call with a status callback, read a call, and list calls.

Twilio's Calls API has no idempotency key: a repeated create is a second call. So no header
pretends otherwise; whether an ambiguous create took effect is learnt from the Calls list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from leadflow_core.logs import get_logger
from leadflow_core.pii import mask_phone
from leadflow_enrichment.failures import ErrorClass, ProviderError
from leadflow_enrichment.providers.base import CallHandle, CallRequest, CallStatus
from leadflow_enrichment.providers.credentials import required
from leadflow_enrichment.providers.http_errors import (
    check_base_url,
    error_for_response,
    make_client,
    transport_errors,
)
from leadflow_enrichment.providers.settings import ProviderSettings

log = get_logger(__name__)

API_VERSION = "2010-04-01"
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
DEFAULT_TWIML = "<Response><Say>Thanks for your request. Connecting you now.</Say></Response>"
RECORDING_NOTICE = "This call may be recorded."
# The Calls list is read newest first; a lookup never needs more than a few pages of one number.
LIST_PAGE_SIZE = 100
MAX_LIST_PAGES = 20
_CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
# Twilio error codes that mean our request was wrong (bad number, bad URL...), not a passing fault.
_VALIDATION_CODES = frozenset(
    {21201, 21205, 21210, 21211, 21212, 21213, 21214, 21215, 21216, 21217, 21401, 21601, 21626}
)


def with_attempt(url: str, attempt_id: str) -> str:
    """The callback URL carrying the attempt id, so a callback finds its attempt without lookups."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "attempt_id"]
    query.append(("attempt_id", attempt_id))
    return urlunsplit(parts._replace(query=urlencode(query)))


class TwilioDialer:
    """Implements `Dialer` over `POST /2010-04-01/Accounts/{AccountSid}/Calls.json`."""

    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str = "https://api.twilio.com",
        twiml_url: str = "",
        twiml: str = DEFAULT_TWIML,
        api_key_sid: str = "",
        machine_detection: str = "",
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
    ) -> None:
        self.account_sid = account_sid
        self.from_number = from_number
        self.base_url = check_base_url(base_url, self.name)
        self.twiml_url = twiml_url
        self.twiml = twiml
        self.machine_detection = machine_detection
        # An API key (SK...) authenticates like the account itself but can be revoked alone.
        self._auth = httpx.BasicAuth(api_key_sid or account_sid, auth_token)
        self._client = make_client(connect_timeout, timeout)

    @classmethod
    def from_config(
        cls, settings: ProviderSettings, secrets: Mapping[str, str], options: Mapping[str, str]
    ) -> TwilioDialer:
        account_sid = options.get("account_sid") or secrets.get("account_sid", "")
        return cls(
            account_sid=required({"account_sid": account_sid}, "account_sid", cls.name),
            auth_token=required(secrets, "auth_token", cls.name, "secret"),
            api_key_sid=options.get("api_key_sid", ""),
            from_number=required(options, "from_number", cls.name),
            base_url=options.get("base_url") or settings.twilio_base_url,
            twiml_url=options.get("twiml_url", ""),
            twiml=options.get("twiml") or DEFAULT_TWIML,
            machine_detection=options.get("machine_detection", ""),
            timeout=settings.provider_timeout_seconds,
            connect_timeout=settings.provider_connect_timeout_seconds,
        )

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/{path}"

    def place_call(self, request: CallRequest) -> CallHandle:
        form: list[tuple[str, str]] = [
            ("To", request.to_e164),
            ("From", request.from_number or self.from_number),
        ]
        form.append(("Url", self.twiml_url) if self.twiml_url else ("Twiml", self._twiml(request)))
        if request.status_callback_url:
            form.append(("StatusCallback", with_attempt(request.status_callback_url, request.attempt_id)))
            form.append(("StatusCallbackMethod", "POST"))
            form.extend(("StatusCallbackEvent", event) for event in STATUS_EVENTS)
        if self._records(request):
            form.append(("Record", "true"))
        if self.machine_detection:
            form.append(("MachineDetection", self.machine_detection))
        with transport_errors(self.name):
            response = self._client.post(self._url("Calls.json"), data=dict_of_lists(form), auth=self._auth)
        body = self._check(response, created=True)
        sid = str(body.get("sid", ""))
        if not sid:
            raise ProviderError(
                "twilio answered without a call sid", ErrorClass.TEMPORARY, provider=self.name, ambiguous=True
            )
        log.info(
            "twilio call created", call_sid=sid, to=mask_phone(request.to_e164), attempt_id=request.attempt_id
        )
        return CallHandle(provider_call_id=sid, status=str(body.get("status") or "queued"))

    def _records(self, request: CallRequest) -> bool:
        """Record only when compliance allowed it; where the announcement is required, only when we
        play it (our own TwiML) — a tenant's `twiml_url` is not known to announce."""
        if not request.record:
            return False
        return not (request.recording_disclosure and self.twiml_url)

    def _twiml(self, request: CallRequest) -> str:
        if not (request.record and request.recording_disclosure):
            return self.twiml
        # Two-party-consent states: say so before anything is recorded.
        return self.twiml.replace("<Response>", f"<Response><Say>{RECORDING_NOTICE}</Say>", 1)

    def fetch_status(self, provider_call_id: str) -> CallStatus:
        if not _CALL_SID.match(provider_call_id):
            raise ProviderError("not a Twilio call sid", ErrorClass.VALIDATION, provider=self.name)
        with transport_errors(self.name):
            response = self._client.get(self._url(f"Calls/{provider_call_id}.json"), auth=self._auth)
        body = self._check(response)
        return _call_status(body, provider_call_id)

    def find_calls(self, to_e164: str, from_number: str, since: datetime) -> list[CallStatus]:
        """Two reads of the Calls list, filtered by To and From: calls still queued (they have no
        start time, so no StartTime filter sees them), then calls started since `since`'s day
        (Twilio filters StartTime by date). Queued first: a call that starts between the reads
        is in the second. Only calls created at or after `since` are kept."""
        found: dict[str, tuple[datetime, CallStatus]] = {}
        day = since.astimezone(UTC).date().isoformat()
        for extra in (("Status", "queued"), ("StartTime>", day)):
            params = [
                ("To", to_e164),
                ("From", from_number or self.from_number),
                extra,
                ("PageSize", str(LIST_PAGE_SIZE)),
            ]
            for call in self._list_calls(params, since):
                created = _rfc2822(call.get("date_created"))
                if created is not None and created >= since:
                    sid = str(call.get("sid") or "")
                    found[sid] = (created, _call_status(call, sid))
        return [status for _, status in sorted(found.values(), key=lambda item: item[0])]

    def _list_calls(self, params: list[tuple[str, str]], since: datetime) -> list[dict[str, Any]]:
        url: str | None = self._url("Calls.json")
        query: str | None = urlencode(params)
        out: list[dict[str, Any]] = []
        for _ in range(MAX_LIST_PAGES):
            if url is None:
                return out
            with transport_errors(self.name):
                response = self._client.get(url, params=query, auth=self._auth)
            body = self._check(response)
            calls = body.get("calls")
            if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
                raise ProviderError("twilio listed calls in an unexpected shape", ErrorClass.TEMPORARY)
            out.extend(calls)
            oldest = _rfc2822(calls[-1].get("date_created")) if calls else None
            next_page = body.get("next_page_uri")
            # Newest first: once a page reaches back before `since`, later pages cannot matter.
            if not next_page or (oldest is not None and oldest < since):
                return out
            url, query = f"{self.base_url}{next_page}", None
        raise ProviderError("twilio call list too long to prove anything", ErrorClass.TEMPORARY)

    def _check(self, response: httpx.Response, *, created: bool = False) -> dict[str, Any]:
        if response.is_success:
            try:
                body = response.json()
            except ValueError as err:
                raise ProviderError(
                    "twilio answered with invalid JSON",
                    ErrorClass.TEMPORARY,
                    provider=self.name,
                    ambiguous=created,
                ) from err
            if not isinstance(body, dict):
                raise ProviderError(
                    "twilio answered with unexpected JSON",
                    ErrorClass.TEMPORARY,
                    provider=self.name,
                    ambiguous=created,
                )
            return body
        code, detail = _twilio_error(response)
        error = error_for_response(response, self.name, detail)
        if code in _VALIDATION_CODES:
            error.error_class = ErrorClass.VALIDATION
        elif code == 20429:
            error.error_class = ErrorClass.RATE_LIMITED
        raise error

    def close(self) -> None:
        self._client.close()


def dict_of_lists(form: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    """httpx encodes a list value as a repeated form field, which Twilio wants for events."""
    out: dict[str, str | list[str]] = {}
    for key, value in form:
        if key in out:
            existing = out[key]
            out[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            out[key] = value
    return out


def _twilio_error(response: httpx.Response) -> tuple[int | None, str]:
    """Twilio's error body: {"code": 21211, "message": ..., "more_info": ..., "status": 400}."""
    try:
        body = response.json()
    except ValueError:
        return None, ""
    if not isinstance(body, dict):
        return None, ""
    code = body.get("code")
    # Only the numeric code is reported: Twilio's messages quote the phone number.
    return (code if isinstance(code, int) else None), (f"twilio error {code}" if code else "")


def _call_status(body: Mapping[str, Any], sid: str) -> CallStatus:
    return CallStatus(
        provider_call_id=str(body.get("sid") or sid),
        status=str(body.get("status") or ""),
        duration_seconds=_int(body.get("duration")),
        price_usd=_price(body.get("price")),
    )


def _rfc2822(value: object) -> datetime | None:
    """Twilio's resource dates: "Tue, 31 Aug 2010 20:36:28 +0000"."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def _int(value: object) -> int:
    try:
        return int(str(value)) if value not in (None, "") else 0
    except ValueError:
        return 0


def _price(value: object) -> str:
    """Twilio reports cost as a negative string ("-0.01400"), null until settled."""
    if value in (None, ""):
        return ""
    try:
        return str(abs(Decimal(str(value))))
    except InvalidOperation:
        return ""

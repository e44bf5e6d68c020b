"""Third-party checks behind small interfaces, so tests and local runs use fakes.

- Reassigned numbers (FCC Reassigned Numbers Database): was this number disconnected after the
  consent date? A "yes" voids the consent.
- Consent proof: TrustedForm certificate claim and Jornaya LeadiD check; `AllConsentProofs`
  runs every configured check. A provider that says the evidence is not genuine voids the
  consent; an unreachable provider does not (no evidence either way).
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol
from urllib.parse import urlencode, urlparse

from leadflow_compliance.engine import ReassignedAnswer


class ReassignedNumbers(Protocol):
    def check(self, e164: str, consent_date: date) -> ReassignedAnswer: ...


class ConsentProof(Protocol):
    def verify(self, trustedform_cert_url: str, jornaya_leadid: str) -> str:
        """Empty when the evidence holds up (or was not checked), else why it does not."""
        ...


class NoReassignedData:
    """No database configured: every answer is "no data" (no safe harbour, consent stands)."""

    def check(self, e164: str, consent_date: date) -> ReassignedAnswer:
        return "no_data"


class NoConsentProof:
    def verify(self, trustedform_cert_url: str, jornaya_leadid: str) -> str:
        return ""


@dataclass
class HttpReassignedNumbers:
    """Queries a Reassigned Numbers Database endpoint: POST {"tn", "date"} -> {"result": yes|no|no_data}."""

    url: str
    api_key: str
    timeout: float = 3.0

    def check(self, e164: str, consent_date: date) -> ReassignedAnswer:
        body = json.dumps({"tn": e164.removeprefix("+1"), "date": consent_date.isoformat()}).encode()
        req = urllib.request.Request(  # noqa: S310 - URL comes from settings
            self.url,
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                answer = json.loads(resp.read()).get("result", "no_data")
        except (urllib.error.URLError, TimeoutError, ValueError):
            # Unreachable database: no safe harbour, but no evidence of reassignment either.
            return "no_data"
        return answer if answer in ("yes", "no") else "no_data"


@dataclass
class HttpConsentProof:
    """Claims a TrustedForm certificate (POST to the cert URL, basic auth API:<key>)."""

    trustedform_api_key: str
    trustedform_base_url: str = "https://cert.trustedform.com"
    timeout: float = 5.0

    def verify(self, trustedform_cert_url: str, jornaya_leadid: str) -> str:
        if not trustedform_cert_url or not self.trustedform_api_key:
            return ""
        base = urlparse(self.trustedform_base_url)
        cert = urlparse(trustedform_cert_url)
        # Only ever send our key to the certificate host itself.
        if (cert.scheme, cert.netloc) != (base.scheme, base.netloc):
            return "TrustedForm certificate URL is not under the TrustedForm host"
        token = base64.b64encode(f"API:{self.trustedform_api_key}".encode()).decode()
        req = urllib.request.Request(  # noqa: S310 - host checked above
            trustedform_cert_url, data=b"{}", method="POST", headers={"Authorization": f"Basic {token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout):  # noqa: S310
                return ""
        except urllib.error.HTTPError as err:
            if err.code in (404, 410):
                return f"TrustedForm certificate not found or expired ({err.code})"
            return ""
        except (urllib.error.URLError, TimeoutError):
            return ""


# A Jornaya LeadiD is a 36-character GUID (8-4-4-4-12 hex digits).
LEADID_SHAPE = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the account key to whatever host it names: treat it as an error."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_NO_REDIRECT_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass
class JornayaLeadId:
    """Checks a Jornaya LeadiD token: its GUID shape always, its authenticity when `url` is set.

    Wire format (an assumption, as Jornaya's authenticate API is documented only to customers):
    `GET <url>?id=<LeadiD>` with the account key in an `X-Api-Key` header, answered with JSON
    `{"authentic": true | false}`; 404 means the token is unknown (not authentic). The key only
    ever goes to the configured URL: redirects are refused, not followed.
    """

    url: str = ""
    api_key: str = ""
    timeout: float = 5.0

    def verify(self, trustedform_cert_url: str, jornaya_leadid: str) -> str:
        token = jornaya_leadid.strip()
        if not token:
            return ""
        if not LEADID_SHAPE.fullmatch(token):
            return "Jornaya LeadiD is not a 36-character GUID"
        if not self.url or not self.api_key:
            return ""
        sep = "&" if urlparse(self.url).query else "?"
        req = urllib.request.Request(  # noqa: S310 - URL comes from settings
            f"{self.url}{sep}{urlencode({'id': token})}",
            headers={"Accept": "application/json", "X-Api-Key": self.api_key},
        )
        try:
            with _NO_REDIRECT_OPENER.open(req, timeout=self.timeout) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            if err.code in (404, 410):
                return f"Jornaya LeadiD not found ({err.code})"
            return ""
        except (urllib.error.URLError, TimeoutError, ValueError):
            # Unreachable or garbled: no evidence either way, consent stands (as for TrustedForm).
            return ""
        if isinstance(answer, dict) and answer.get("authentic") is False:
            return "Jornaya LeadiD is not authentic"
        return ""


@dataclass
class AllConsentProofs:
    """Every configured check; the evidence holds up only when none rejects it."""

    checks: Sequence[ConsentProof]

    def verify(self, trustedform_cert_url: str, jornaya_leadid: str) -> str:
        failures = (check.verify(trustedform_cert_url, jornaya_leadid) for check in self.checks)
        return "; ".join(f for f in failures if f)

"""A fake of Salesforce's REST API: upsert of a Lead by an external id field.

`PATCH /services/data/vXX.X/sobjects/Lead/{ExternalIdField}/{value}` with a JSON body and an
OAuth bearer token; 201 `{"id","success","errors","created":true}` when created, 200 with
`"created": false` when updated; errors as `[{"message","errorCode","fields"}]`.
`GET` on the same path returns the record (`{"attributes", "Id", ...fields}`) or 404 `NOT_FOUND`.

It counts what reached it: `writes[value]` successful upserts per external id, and
`records_with(value)` the records holding that external id (an upsert never makes a second).
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from typing import Any
from urllib.parse import unquote

from tests.fakes.http_server import FakeHttpServer, RecordedRequest, Reply

_UPSERT = re.compile(r"^/services/data/v\d+\.\d+/sobjects/Lead/(?P<field>[^/]+)/(?P<value>[^/]+)$")
_REQUIRED = ("LastName", "Company")
_CODES = {
    401: ("Session expired or invalid", "INVALID_SESSION_ID"),
    403: ("TotalRequests Limit exceeded.", "REQUEST_LIMIT_EXCEEDED"),
    400: ("Required fields are missing", "REQUIRED_FIELD_MISSING"),
    404: ("The requested resource does not exist", "NOT_FOUND"),
    503: ("Server unavailable", "SERVER_UNAVAILABLE"),
}


def sf_error(message: str, code: str, fields: list[str] | None = None) -> list[dict[str, Any]]:
    return [{"message": message, "errorCode": code, "fields": fields or []}]


class SalesforceFake(FakeHttpServer):
    def __init__(
        self,
        access_token: str = "fake-sf-token",
        external_id_field: str = "Leadflow_Id__c",
    ) -> None:
        super().__init__()
        self.access_token = access_token
        self.external_id_field = external_id_field
        # external id value -> record fields (with "Id")
        self.leads: dict[str, dict[str, Any]] = {}
        # external id value -> upserts that changed the CRM (created or updated the record)
        self.writes: Counter[str] = Counter()

    def error_reply(self, status: int) -> Reply:
        message, code = _CODES.get(status, ("An unexpected error occurred", "UNKNOWN_EXCEPTION"))
        return Reply(status, sf_error(message, code))

    def limit_exceeded(self, times: int = 1) -> None:
        """Answer like an org that has used its daily API requests."""
        self.fail(times, 403, body=sf_error("TotalRequests Limit exceeded.", "REQUEST_LIMIT_EXCEEDED"))

    def route(self, request: RecordedRequest) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return Reply(401, sf_error("Session expired or invalid", "INVALID_SESSION_ID"))
        match = _UPSERT.match(request.path)
        if match is None:
            return Reply(404, sf_error("The requested resource does not exist", "NOT_FOUND"))
        if request.method not in ("PATCH", "GET"):
            return Reply(405, sf_error(f"HTTP Method '{request.method}' not allowed", "METHOD_NOT_ALLOWED"))
        field = unquote(match["field"])
        if field != self.external_id_field:
            return Reply(404, sf_error(f"Provided external ID field does not exist: {field}", "NOT_FOUND"))
        if request.method == "GET":
            return self._get(unquote(match["value"]), request.path)
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            return Reply(400, sf_error("Unexpected character", "JSON_PARSER_ERROR"))
        if not isinstance(body, dict):
            return Reply(400, sf_error("Expected an object", "JSON_PARSER_ERROR"))
        value = unquote(match["value"])
        existing = self.leads.get(value)
        missing = [f for f in _REQUIRED if not body.get(f) and not (existing and existing.get(f))]
        if missing:
            return Reply(
                400, sf_error(f"Required fields are missing: {missing}", "REQUIRED_FIELD_MISSING", missing)
            )
        if existing is None:
            record = {"Id": "00Q" + uuid.uuid4().hex[:15].upper(), field: value, **body}
            self.leads[value] = record
            self.writes[value] += 1
            return Reply(201, {"id": record["Id"], "success": True, "errors": [], "created": True})
        existing.update(body)
        self.writes[value] += 1
        return Reply(200, {"id": existing["Id"], "success": True, "errors": [], "created": False})

    def _get(self, value: str, path: str) -> Reply:
        record = self.leads.get(value)
        if record is None:
            return Reply(404, sf_error("The requested resource does not exist", "NOT_FOUND"))
        return Reply(200, {"attributes": {"type": "Lead", "url": path}, **record})

    def lead(self, external_id: str) -> dict[str, Any]:
        return dict(self.leads[external_id])

    def records_with(self, external_id: str) -> int:
        """Lead records whose external id field holds `external_id`."""
        return sum(1 for r in self.leads.values() if r.get(self.external_id_field) == external_id)

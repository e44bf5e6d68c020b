"""A fake of HubSpot's CRM v3 contacts: batch upsert and read by a unique property.

`POST /crm/v3/objects/contacts/batch/upsert` with a bearer token and
`{"inputs": [{"idProperty": <unique property>, "id": ..., "properties": {...}}]}`, where the
`idProperty` is `email` or a custom property created with `hasUniqueValue: true` (here:
`unique_properties`); answers `{"status": "COMPLETE", "results": [{"id", "properties", "new", ...}]}`,
207 with `errors` for inputs it rejects, and errors as
`{"status": "error", "message", "category", "correlationId"}`.
`GET /crm/v3/objects/contacts/{id}?idProperty=<unique property>` reads one contact, 404
`OBJECT_NOT_FOUND` when none has that value.

Email is unique among contacts too: an upsert by another property that would create a second
contact with a known email is refused with 409 `CONFLICT` ("Contact already exists. Existing ID:
N", HubSpot's answer to creating a contact with a known email; its exact shape in a batch upsert
is unconfirmed).

It counts what reached it: `writes[(idProperty, id)]` inputs that changed the CRM, and
`contacts_with(property, value)` the contacts holding a value.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from tests.fakes.http_server import FakeHttpServer, RecordedRequest, Reply

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ONE = re.compile(r"^/crm/v3/objects/contacts/(?P<id>[^/]+)$")
UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"


def hs_error(message: str, category: str, **extra: Any) -> dict[str, Any]:
    return {
        "status": "error",
        "message": message,
        "category": category,
        "correlationId": str(uuid.uuid4()),
        **extra,
    }


class HubSpotFake(FakeHttpServer):
    def __init__(
        self,
        access_token: str = "fake-hubspot-token",
        unique_properties: Iterable[str] = ("leadflow_lead_id",),
    ) -> None:
        super().__init__()
        self.access_token = access_token
        self.unique_properties = {"email", *unique_properties}
        self.records: dict[str, dict[str, Any]] = {}  # contact id -> {"id", "properties", "createdAt"}
        self.writes: Counter[tuple[str, str]] = Counter()
        self._next_id = 1000

    @property
    def contacts(self) -> dict[str, dict[str, Any]]:
        """Contacts by email (those that have one)."""
        return {c["properties"]["email"]: c for c in self.records.values() if c["properties"].get("email")}

    def contacts_with(self, prop: str, value: str) -> int:
        return sum(1 for c in self.records.values() if c["properties"].get(prop) == value)

    def error_reply(self, status: int) -> Reply:
        if status == 429:
            return Reply(
                status,
                hs_error(
                    "You have reached your secondly limit.",
                    "RATE_LIMITS",
                    errorType="RATE_LIMIT",
                    policyName="SECONDLY",
                ),
            )
        if status == 401:
            return Reply(status, hs_error("Authentication credentials not found.", "INVALID_AUTHENTICATION"))
        if status == 400:
            return Reply(status, hs_error("Invalid input JSON", "VALIDATION_ERROR"))
        return Reply(status, hs_error("internal error", "INTERNAL_ERROR"))

    def route(self, request: RecordedRequest) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return self.error_reply(401)
        if request.path == UPSERT_PATH and request.method == "POST":
            return self._upsert(request)
        one = _ONE.match(request.path)
        if one is not None and request.method == "GET":
            return self._read(unquote(one["id"]), (request.query.get("idProperty") or [""])[0])
        return Reply(404, hs_error("Not found", "OBJECT_NOT_FOUND"))

    def _find(self, prop: str, value: str) -> dict[str, Any] | None:
        if prop == "email":
            value = value.lower()
        return next((c for c in self.records.values() if c["properties"].get(prop) == value), None)

    def _read(self, value: str, prop: str) -> Reply:
        if prop:
            if prop not in self.unique_properties:
                return Reply(400, hs_error(f"{prop} is not a unique property", "VALIDATION_ERROR"))
            contact = self._find(prop, value)
        else:
            contact = self.records.get(value)
        if contact is None:
            return Reply(404, hs_error("Object not found.", "OBJECT_NOT_FOUND"))
        return Reply(200, self._view(contact, datetime.now(UTC).isoformat()))

    @staticmethod
    def _view(contact: dict[str, Any], now: str) -> dict[str, Any]:
        return {
            "id": contact["id"],
            "properties": dict(contact["properties"]),
            "createdAt": contact["createdAt"],
            "updatedAt": now,
            "archived": False,
        }

    def _upsert(self, request: RecordedRequest) -> Reply:
        try:
            body = request.json()
            inputs = body["inputs"]
        except (ValueError, KeyError, TypeError):
            return self.error_reply(400)
        if not isinstance(inputs, list) or not 0 < len(inputs) <= 100:
            return self.error_reply(400)
        now = datetime.now(UTC).isoformat()
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in inputs:
            prop = item.get("idProperty") if isinstance(item, dict) else None
            if prop not in self.unique_properties or not item.get("id"):
                return Reply(400, hs_error("idProperty must be a unique property", "VALIDATION_ERROR"))
            value = str(item["id"]).lower() if prop == "email" else str(item["id"])
            props = {k: str(v) for k, v in (item.get("properties") or {}).items()}
            if "email" in props:
                props["email"] = props["email"].lower()
            email = value if prop == "email" else props.get("email", "")
            if email and not _EMAIL.match(email):
                errors.append(
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "message": "Property values were not valid",
                        "context": {"id": ["?"]},
                    }
                )
                continue
            known = self._find(prop, value)
            if known is None and email and prop != "email":
                holder = self._find("email", email)
                if holder is not None:
                    return Reply(
                        409, hs_error(f"Contact already exists. Existing ID: {holder['id']}", "CONFLICT")
                    )
            new = known is None
            if known is None:
                self._next_id += 1
                known = {"id": str(self._next_id), "properties": {prop: value}, "createdAt": now}
                self.records[known["id"]] = known
            known["properties"].update(props)
            self.writes[(prop, value)] += 1
            results.append({**self._view(known, now), "new": new})
        answer: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": now,
            "completedAt": now,
        }
        if errors:
            answer["errors"] = errors
            answer["numErrors"] = len(errors)
            return Reply(207, answer)
        return Reply(200, answer)

"""A fake of HubSpot's CRM v3 contacts batch upsert by email.

`POST /crm/v3/objects/contacts/batch/upsert` with a bearer token and
`{"inputs": [{"idProperty": "email", "id": ..., "properties": {...}}]}`; answers
`{"status": "COMPLETE", "results": [{"id", "properties", "new", ...}]}`, 207 with `errors` for
inputs it rejects, and errors as `{"status": "error", "message", "category", "correlationId"}`.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.fakes.http_server import FakeHttpServer, RecordedRequest, Reply

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def hs_error(message: str, category: str, **extra: Any) -> dict[str, Any]:
    return {
        "status": "error",
        "message": message,
        "category": category,
        "correlationId": str(uuid.uuid4()),
        **extra,
    }


class HubSpotFake(FakeHttpServer):
    def __init__(self, access_token: str = "fake-hubspot-token") -> None:
        super().__init__()
        self.access_token = access_token
        self.contacts: dict[str, dict[str, Any]] = {}  # email -> {"id", "properties"}
        self._next_id = 1000

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
        if request.path != "/crm/v3/objects/contacts/batch/upsert" or request.method != "POST":
            return Reply(404, hs_error("Not found", "OBJECT_NOT_FOUND"))
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
            if not isinstance(item, dict) or item.get("idProperty") != "email" or not item.get("id"):
                return Reply(400, hs_error("idProperty must be a unique property", "VALIDATION_ERROR"))
            email = str(item["id"]).lower()
            if not _EMAIL.match(email):
                errors.append(
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "message": "Property values were not valid",
                        "context": {"id": ["?"]},
                    }
                )
                continue
            props = {k: str(v) for k, v in (item.get("properties") or {}).items()}
            known = self.contacts.get(email)
            if known is None:
                self._next_id += 1
                known = {"id": str(self._next_id), "properties": {"email": email}, "createdAt": now}
                self.contacts[email] = known
                new = True
            else:
                new = False
            known["properties"].update(props)
            results.append(
                {
                    "id": known["id"],
                    "properties": dict(known["properties"]),
                    "createdAt": known["createdAt"],
                    "updatedAt": now,
                    "archived": False,
                    "new": new,
                }
            )
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

"""A fake of Twilio's Voice REST API (Calls resource) that also sends signed status callbacks.

Speaks the documented wire format: form-encoded `POST /2010-04-01/Accounts/{Sid}/Calls.json`
with HTTP basic auth, JSON call resources, Twilio's error body `{"code", "message", "more_info",
"status"}`, and status callbacks POSTed form-encoded to `StatusCallback` with
`X-Twilio-Signature = base64(HMAC-SHA1(auth token, URL + sorted name/value pairs))`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx

from tests.fakes.http_server import FakeHttpServer, RecordedRequest, Reply

_CALLS = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>AC[0-9A-Za-z]+)/Calls(?:/(?P<sid>CA[0-9a-f]+))?\.json$"
)
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# Which subscribed event reports which CallStatus.
_EVENT_OF_STATUS = {
    "queued": "initiated",
    "initiated": "initiated",
    "ringing": "ringing",
    "in-progress": "answered",
    "completed": "completed",
    "busy": "completed",
    "no-answer": "completed",
    "failed": "completed",
    "canceled": "completed",
}


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's documented algorithm, written independently of the service's code."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


@dataclass
class FakeCall:
    sid: str
    to: str
    from_: str
    status: str
    status_callback: str
    events: list[str]
    idempotency_key: str
    duration: int | None = None
    price: str | None = None
    callbacks: list[tuple[str, int]] = field(default_factory=list)  # (CallStatus, answer status)


class TwilioFake(FakeHttpServer):
    def __init__(
        self,
        account_sid: str = "AC" + "0" * 32,
        auth_token: str = "fake-twilio-token",
        *,
        auto_progress: list[str] | None = None,
        duration: int = 42,
    ) -> None:
        """`auto_progress`, e.g. ["ringing", "in-progress", "completed"]: statuses each new call
        goes through on its own (callbacks sent from a background thread)."""
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.auto_progress = auto_progress or []
        self.duration = duration
        self.calls: dict[str, FakeCall] = {}
        self._by_key: dict[str, str] = {}
        self._workers: list[threading.Thread] = []

    def error_reply(self, status: int) -> Reply:
        code = {429: 20429, 401: 20003, 404: 20404, 400: 21211}.get(status, 20500)
        return Reply(status, self._error_body(code, f"injected {status}", status))

    @staticmethod
    def _error_body(code: int, message: str, status: int) -> dict[str, object]:
        return {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }

    def _authorised(self, request: RecordedRequest) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user == self.account_sid and hmac.compare_digest(password, self.auth_token)

    def route(self, request: RecordedRequest) -> Reply:
        match = _CALLS.match(request.path)
        if match is None:
            return Reply(404, self._error_body(20404, "The requested resource was not found", 404))
        if not self._authorised(request) or match["account"] != self.account_sid:
            return Reply(401, self._error_body(20003, "Authenticate", 401))
        if request.method == "POST" and match["sid"] is None:
            return self._create(request)
        if request.method == "GET" and match["sid"]:
            call = self.calls.get(match["sid"])
            if call is None:
                return Reply(404, self._error_body(20404, "The requested resource was not found", 404))
            return Reply(200, self._resource(call))
        return Reply(405, self._error_body(20004, "Method not allowed", 405))

    def _create(self, request: RecordedRequest) -> Reply:
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return Reply(400, self._error_body(21201, "Content type must be form-encoded", 400))
        form = request.form()
        to, from_ = form.get("To", [""])[0], form.get("From", [""])[0]
        if not _E164.match(to):
            return Reply(400, self._error_body(21211, "Invalid 'To' Phone Number", 400))
        if not from_:
            return Reply(400, self._error_body(21213, "No 'From' number is specified", 400))
        if not (form.get("Url") or form.get("Twiml")):
            return Reply(400, self._error_body(21205, "Url or Twiml is required", 400))
        # Twilio takes repeated fields; a space-separated single value is accepted as well.
        events = [e for value in form.get("StatusCallbackEvent", []) for e in value.split()]
        if any(e not in ("initiated", "ringing", "answered", "completed") for e in events):
            return Reply(400, self._error_body(21626, "Invalid 'StatusCallbackEvent'", 400))
        key = request.headers.get("idempotency-key", "")
        if key and key in self._by_key:
            return Reply(201, self._resource(self.calls[self._by_key[key]]))
        call = FakeCall(
            sid="CA" + uuid.uuid4().hex,
            to=to,
            from_=from_,
            status="queued",
            status_callback=form.get("StatusCallback", [""])[0],
            events=events or ["completed"],
            idempotency_key=key,
        )
        self.calls[call.sid] = call
        if key:
            self._by_key[key] = call.sid
        if self.auto_progress and call.status_callback:
            worker = threading.Thread(
                target=self._progress_all, args=(call.sid, list(self.auto_progress)), daemon=True
            )
            self._workers.append(worker)
            worker.start()
        return Reply(201, self._resource(call))

    def _resource(self, call: FakeCall) -> dict[str, object]:
        now = format_datetime(datetime.now(UTC), usegmt=True)
        return {
            "sid": call.sid,
            "account_sid": self.account_sid,
            "to": call.to,
            "from": call.from_,
            "status": call.status,
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": now,
            "date_updated": now,
            "duration": str(call.duration) if call.duration is not None else None,
            "price": call.price,
            "price_unit": "USD",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{call.sid}.json",
        }

    def _progress_all(self, sid: str, statuses: list[str]) -> None:
        for status in statuses:
            if self._stopping.is_set():
                return
            self.progress(sid, status)

    def progress(
        self, sid: str, status: str, duration: int | None = None, *, notify: bool = True
    ) -> int | None:
        """Move a call to `status` and, if subscribed, POST the signed callback. Returns its answer.
        `notify=False` loses the callback (only a fetch of the call sees the new status)."""
        call = self.calls[sid]
        call.status = status
        final = _EVENT_OF_STATUS[status] == "completed"
        if final:
            call.duration = (
                (duration if duration is not None else self.duration) if status == "completed" else 0
            )
            call.price = f"-{0.014 * max(1, -(-call.duration // 60)):.5f}" if status == "completed" else None
        if not notify or not call.status_callback or _EVENT_OF_STATUS[status] not in call.events:
            return None
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": sid,
            "CallStatus": status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": "outbound-api",
            "From": call.from_,
            "To": call.to,
            "Timestamp": format_datetime(datetime.now(UTC), usegmt=True),
            "SequenceNumber": str(len(call.callbacks)),
        }
        if final:
            params["CallDuration"] = str(call.duration)
        headers = {"X-Twilio-Signature": sign(self.auth_token, call.status_callback, params)}
        try:
            answer = httpx.post(call.status_callback, data=params, headers=headers, timeout=10).status_code
        except httpx.HTTPError:
            answer = 0
        call.callbacks.append((status, answer))
        return answer

    def stop(self) -> None:
        super().stop()
        for worker in self._workers:
            worker.join(10)

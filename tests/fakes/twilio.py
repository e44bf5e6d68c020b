"""A fake of Twilio's Voice REST API (Calls resource) that also sends signed status callbacks.

Speaks the documented wire format: form-encoded `POST /2010-04-01/Accounts/{Sid}/Calls.json`
with HTTP basic auth, JSON call resources, Twilio's error body `{"code", "message", "more_info",
"status"}`, the Calls list (`GET .../Calls.json` filtered by `To`, `From`, `Status` and
`StartTime` / `StartTime>` / `StartTime<` dates, newest first, paged by `PageSize` and
`next_page_uri`), and status callbacks POSTed form-encoded to `StatusCallback` with
`X-Twilio-Signature = base64(HMAC-SHA1(auth token, URL + sorted name/value pairs))`.

Like Twilio, it has no idempotency key: every create is a new call (a fresh sid), whatever the
headers say. It counts calls per destination (`calls_to`) so tests assert effects on the
provider's side. `fail_after_create` injects the worst faults a client meets: the call IS
created, then the answer is a 500, arrives too late (a timeout), or never (the connection drops).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from tests.fakes.http_server import FakeHttpServer, RecordedRequest, Reply

_CALLS = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>AC[0-9A-Za-z]+)/Calls(?:/(?P<sid>CA[0-9a-f]+))?\.json$"
)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
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
# Twilio's order: a call moves forward only (queued, initiated, ringing, in-progress, an end).
_RANK = {"queued": 0, "initiated": 1, "ringing": 2, "in-progress": 3}
_FINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
STATUSES = frozenset(_EVENT_OF_STATUS)
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
AFTER_CREATE_FAULTS = ("500", "timeout", "drop")


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's documented algorithm, written independently of the service's code."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def lifecycle(final: str) -> list[str]:
    """The statuses Twilio reports, in order, for a call that ends `final`."""
    if final == "completed":
        return ["initiated", "ringing", "in-progress", "completed"]
    if final in ("busy", "no-answer", "canceled"):
        return ["initiated", "ringing", final]
    return ["initiated", final]


@dataclass
class FakeCall:
    sid: str
    to: str
    from_: str
    status: str
    status_callback: str
    events: list[str]
    date_created: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: int | None = None
    price: str | None = None
    callbacks: list[tuple[str, int]] = field(default_factory=list)  # (CallStatus, answer status)
    last_callback: dict[str, str] = field(default_factory=dict)

    @property
    def marker(self) -> str:
        """The `attempt_id` our client puts in the StatusCallback URL (Twilio never reads it)."""
        return dict(parse_qsl(urlsplit(self.status_callback).query)).get("attempt_id", "")


class TwilioFake(FakeHttpServer):
    def __init__(
        self,
        account_sid: str = "AC" + "0" * 32,
        auth_token: str = "fake-twilio-token",
        *,
        auto_progress: list[str] | None = None,
        duration: int = 42,
        price_after_seconds: float = 0.0,
    ) -> None:
        """`auto_progress`, e.g. ["ringing", "in-progress", "completed"]: statuses each new call
        goes through on its own (callbacks sent from a background thread). `price_after_seconds`:
        as on Twilio, a completed call's `price` is null for a while after it ends."""
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.auto_progress = auto_progress or []
        self.duration = duration
        self.price_after_seconds = price_after_seconds
        self.calls: dict[str, FakeCall] = {}
        self._calls_lock = threading.Lock()
        self._after_create: list[str] = []
        self._workers: list[threading.Thread] = []

    # --- what tests ask ---------------------------------------------------------------------

    def calls_to(self, number: str) -> list[FakeCall]:
        """Every call created to `number`, oldest first: the provider's own count."""
        with self._calls_lock:
            return [c for c in self.calls.values() if c.to == number]

    def fail_after_create(self, mode: str, times: int = 1) -> None:
        """The next `times` creates make the call, then answer 500 ("500"), answer only after
        the client gave up ("timeout"), or close the connection without an answer ("drop")."""
        if mode not in AFTER_CREATE_FAULTS:
            raise ValueError(f"mode must be one of {AFTER_CREATE_FAULTS}")
        with self._calls_lock:
            self._after_create.extend([mode] * times)

    def error_reply(self, status: int) -> Reply:
        code = {429: 20429, 401: 20003, 404: 20404, 400: 21211, 503: 20503}.get(status, 20500)
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
        if request.method == "GET" and match["sid"] is None:
            return self._list(request)
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
        # No deduplication of any kind: Twilio documents no idempotency key for Calls.
        call = FakeCall(
            sid="CA" + uuid.uuid4().hex,
            to=to,
            from_=from_,
            status="queued",
            status_callback=form.get("StatusCallback", [""])[0],
            events=events or ["completed"],
            date_created=datetime.now(UTC),
        )
        with self._calls_lock:
            self.calls[call.sid] = call
            fault = self._after_create.pop(0) if self._after_create else ""
        if self.auto_progress and call.status_callback:
            worker = threading.Thread(
                target=self._progress_all, args=(call.sid, list(self.auto_progress)), daemon=True
            )
            self._workers.append(worker)
            worker.start()
        if fault == "500":
            return Reply(500, self._error_body(20500, "Internal Server Error", 500))
        if fault == "drop":
            return Reply(0, drop=True)
        if fault == "timeout":
            # Longer than any client timeout the tests configure; released early by stop().
            self._stopping.wait(30)
        return Reply(201, self._resource(call))

    def _list(self, request: RecordedRequest) -> Reply:
        q = {k: v[0] for k, v in request.query.items()}
        try:
            size = int(q.get("PageSize", DEFAULT_PAGE_SIZE))
            page = int(q.get("Page", 0))
        except ValueError:
            return Reply(400, self._error_body(20001, "Invalid paging parameter", 400))
        if not 1 <= size <= MAX_PAGE_SIZE or page < 0:
            return Reply(400, self._error_body(20001, "Invalid paging parameter", 400))
        bounds: dict[str, date] = {}
        for key in ("StartTime", "StartTime>", "StartTime<"):
            if key in q:
                if not _DATE.match(q[key]):
                    return Reply(400, self._error_body(20001, f"Invalid {key}", 400))
                bounds[key] = date.fromisoformat(q[key])
        status = q.get("Status", "")
        if status and status not in STATUSES:
            return Reply(400, self._error_body(20001, "Invalid Status", 400))
        with self._calls_lock:
            calls = list(self.calls.values())
        chosen = [
            c
            for c in calls
            if q.get("To", c.to) == c.to
            and q.get("From", c.from_) == c.from_
            and (not status or c.status == status)
            and _started_within(c, bounds)
        ]
        chosen.sort(key=lambda c: c.date_created, reverse=True)  # newest first, as Twilio lists
        items = chosen[page * size : (page + 1) * size]
        base = f"/2010-04-01/Accounts/{self.account_sid}/Calls.json"
        filters = [(k, v) for k, v in q.items() if k not in ("Page", "PageSize", "PageToken")]

        def page_uri(n: int) -> str:
            # Twilio's next_page_uri also carries an opaque PageToken; ours encodes the offset.
            token = [("PageToken", f"PA{n * size}")] if n else []
            return f"{base}?{urlencode([*filters, ('PageSize', str(size)), ('Page', str(n)), *token])}"

        more = (page + 1) * size < len(chosen)
        return Reply(
            200,
            {
                "calls": [self._resource(c) for c in items],
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if more else None,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "page": page,
                "page_size": size,
                "start": page * size,
                "end": page * size + max(len(items) - 1, 0),
                "uri": page_uri(page),
            },
        )

    def _resource(self, call: FakeCall) -> dict[str, object]:
        def rfc2822(at: datetime | None) -> str | None:
            return format_datetime(at, usegmt=True) if at is not None else None

        return {
            "sid": call.sid,
            "account_sid": self.account_sid,
            "to": call.to,
            "from": call.from_,
            "status": call.status,
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": rfc2822(call.date_created),
            "date_updated": rfc2822(datetime.now(UTC)),
            "start_time": rfc2822(call.start_time),
            "end_time": rfc2822(call.end_time),
            "duration": str(call.duration) if call.duration is not None else None,
            "price": call.price if self._priced(call) else None,
            "price_unit": "USD",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{call.sid}.json",
        }

    def _priced(self, call: FakeCall) -> bool:
        return (
            call.end_time is not None
            and (datetime.now(UTC) - call.end_time).total_seconds() >= self.price_after_seconds
        )

    def _progress_all(self, sid: str, statuses: list[str]) -> None:
        for status in statuses:
            if self._stopping.is_set():
                return
            self.progress(sid, status)

    def play(self, sid: str, final: str, duration: int | None = None) -> list[int | None]:
        """Take a call through Twilio's documented sequence to `final`; the callbacks' answers."""
        call = self.calls[sid]
        steps = [s for s in lifecycle(final) if _RANK.get(s, 9) > _RANK.get(call.status, 0)]
        return [self.progress(sid, s, duration if s == final else None) for s in steps]

    def progress(
        self, sid: str, status: str, duration: int | None = None, *, notify: bool = True
    ) -> int | None:
        """Move a call to `status` and, if subscribed, POST the signed callback. Returns its answer.
        `notify=False` loses the callback (only a fetch of the call sees the new status)."""
        call = self.calls[sid]
        if call.status in _FINAL or _RANK.get(status, 9) <= _RANK.get(call.status, 0):
            raise ValueError(f"a Twilio call does not go from {call.status} to {status}")
        call.status = status
        now = datetime.now(UTC)
        if call.start_time is None and status != "queued":
            call.start_time = now
        final = _EVENT_OF_STATUS[status] == "completed"
        if final:
            call.end_time = now
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
            "CallbackSource": "call-progress-events",
            "Called": call.to,
            "Caller": call.from_,
            "Direction": "outbound-api",
            "From": call.from_,
            "To": call.to,
            "Timestamp": format_datetime(now, usegmt=True),
            "SequenceNumber": str(len(call.callbacks)),
        }
        if final:
            params["CallDuration"] = str(call.duration)
        call.last_callback = params
        return self._post_callback(call, status, params)

    def redeliver(self, sid: str) -> int | None:
        """Send the call's last callback again, as Twilio does when it could not tell that the
        first one arrived (its connection overrides retry a callback)."""
        call = self.calls[sid]
        return self._post_callback(call, call.last_callback["CallStatus"], call.last_callback)

    def _post_callback(self, call: FakeCall, status: str, params: dict[str, str]) -> int:
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


def _started_within(call: FakeCall, bounds: dict[str, date]) -> bool:
    """Twilio's StartTime filters compare the day (UTC) the call started; a call that has not
    started (queued) has no start time and matches none of them."""
    if not bounds:
        return True
    if call.start_time is None:
        return False
    day = call.start_time.date()
    return (
        ("StartTime" not in bounds or day == bounds["StartTime"])
        and ("StartTime>" not in bounds or day >= bounds["StartTime>"])
        and ("StartTime<" not in bounds or day <= bounds["StartTime<"])
    )

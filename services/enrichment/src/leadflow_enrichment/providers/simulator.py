"""The dial simulator: places a new call for every request (as Twilio does: no idempotency key)
and plays a Twilio-like lifecycle; `find_calls` lists a number's calls as Twilio's Calls list does."""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import cast

from sqlalchemy import Engine, Table, bindparam, func, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from leadflow_core import clock
from leadflow_core.pii import mask_phone, subject_hash
from leadflow_core.timestamps import as_utc, utcnow
from leadflow_enrichment.failures import ErrorClass, ProviderError
from leadflow_enrichment.providers.base import CallHandle, CallRequest, CallStatus
from leadflow_enrichment.providers.local_crm_models import SimulatedCall
from leadflow_enrichment.providers.status_callbacks import CallbackSender

_INSERT_CALL = insert(SimulatedCall)

FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})

_CALLS = cast(Table, SimulatedCall.__table__)
# Built once, like _INSERT_CALL: a status change per callback, and the ORM's bulk UPDATE (which
# also evaluates its WHERE against the session) cost a third of the worker process's time.
_RECORD_STATUS = (
    update(_CALLS)
    .where(
        _CALLS.c.tenant == bindparam("b_tenant"),
        _CALLS.c.call_sid == bindparam("b_call_sid"),
        _CALLS.c.status.not_in(sorted(FINAL_STATUSES)),
    )
    .values(
        status=bindparam("b_status"),
        updated_at=bindparam("b_now"),
        callbacks_sent=_CALLS.c.callbacks_sent + 1,
        ended_at=bindparam("b_ended_at"),
    )
)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


SEQUENCE_PREFIX = "seq:"


def parse_outcomes(spec: str) -> list[tuple[str, int]]:
    """Weighted final statuses from "completed:80,no-answer:15,busy:5" (weight 1 when omitted).

    "seq:busy,completed" is a sequence instead: a lead's first call ends busy, its second and
    later ones completed (see `SimulatorConfig.sequence`)."""
    outcomes: list[tuple[str, int]] = []
    for item in spec.removeprefix(SEQUENCE_PREFIX).split(","):
        name, _, weight = item.strip().partition(":")
        if not name:
            continue
        if name not in FINAL_STATUSES:
            raise ValueError(f"unknown simulated outcome {name!r}; expected one of {sorted(FINAL_STATUSES)}")
        outcomes.append((name, int(weight) if weight else 1))
    if not outcomes or sum(w for _, w in outcomes) <= 0:
        raise ValueError("simulator outcomes need at least one positive weight")
    return outcomes


def pick_outcome(outcomes: list[tuple[str, int]], attempt_id: str) -> str:
    """Deterministic in the attempt id: a replayed attempt always meets the same fate."""
    total = sum(w for _, w in outcomes)
    point = int.from_bytes(hashlib.sha256(attempt_id.encode()).digest()[:8], "big") % total
    for name, weight in outcomes:
        if point < weight:
            return name
        point -= weight
    return outcomes[-1][0]


def lifecycle(final: str) -> list[str]:
    """The statuses Twilio reports on the way to `final`."""
    if final == "completed":
        return ["ringing", "in-progress", "completed"]
    if final in ("busy", "no-answer"):
        return ["ringing", final]
    return [final]


@dataclass(frozen=True)
class SimulatorConfig:
    outcomes: list[tuple[str, int]]
    # Outcomes by the lead's call count (first call, second call, ... last repeats), not by weight.
    sequence: bool = False
    duration_seconds: int = 45
    step_seconds: float = 0.05
    auth_token: str = "leadflow-simulator-token"  # noqa: S105 (local default, not a secret)
    account_sid: str = "ACsimulator00000000000000000000000"
    from_number: str = "+15005550006"
    price_per_minute_usd: Decimal = Decimal("0.0140")
    pii_hash_key: str = "leadflow-local-pii-key"


class DialSimulator:
    """Implements `Dialer` for one tenant, on enrichment's own `enrichment_simulated_calls` table."""

    name = "simulator"

    def __init__(self, engine: Engine, tenant: str, config: SimulatorConfig, sender: CallbackSender) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.tenant = tenant
        self.config = config
        self._sender = sender

    def place_call(self, request: CallRequest) -> CallHandle:
        if request.tenant != self.tenant:
            raise ProviderError("call request for another tenant", ErrorClass.SYSTEM, provider=self.name)
        if not request.attempt_id:
            raise ProviderError("call request without attempt id", ErrorClass.VALIDATION, provider=self.name)
        if not _E164.match(request.to_e164):
            raise ProviderError(
                "destination is not an E.164 number", ErrorClass.VALIDATION, provider=self.name, status=400
            )
        final = self._outcome(request)
        steps = lifecycle(final)
        now = utcnow()
        call_sid = "CA" + uuid.uuid4().hex
        from_number = request.from_number or self.config.from_number
        duration = self.config.duration_seconds if final == "completed" else 0
        try:
            # A Core insert built once (its values are parameters): one per call placed, and
            # the ORM's unit of work, or a statement rebuilt per call, cost more than the write.
            with self._engine.begin() as conn:
                conn.execute(
                    _INSERT_CALL,
                    {
                        "call_sid": call_sid,
                        "tenant": request.tenant,
                        "attempt_id": request.attempt_id,
                        "lead_id": request.lead_id,
                        "to_masked": mask_phone(request.to_e164),
                        "to_hash": subject_hash(request.to_e164, self.config.pii_hash_key),
                        "from_number": from_number,
                        "status": "queued",
                        "planned_status": final,
                        "duration_seconds": duration,
                        "callback_url": request.status_callback_url,
                        "callbacks_sent": 0,
                        "created_at": now,
                        "updated_at": now,
                        "due_at": now + timedelta(seconds=self.config.step_seconds * (len(steps) + 1)),
                        "recorded": request.record,
                        "recording_announced": request.record and request.recording_disclosure,
                    },
                )
        except OperationalError as err:
            raise ProviderError(
                "simulator database unavailable", ErrorClass.TEMPORARY, provider=self.name
            ) from err
        if request.status_callback_url:
            self._schedule_callbacks(call_sid, from_number, duration, request, steps)
        return CallHandle(provider_call_id=call_sid, status="queued")

    def _outcome(self, request: CallRequest) -> str:
        if not self.config.sequence:
            return pick_outcome(self.config.outcomes, request.attempt_id)
        with self._sessions() as session:
            earlier = session.scalar(
                select(func.count())
                .select_from(SimulatedCall)
                .where(SimulatedCall.tenant == self.tenant, SimulatedCall.lead_id == request.lead_id)
            )
        return self.config.outcomes[min(earlier or 0, len(self.config.outcomes) - 1)][0]

    def fetch_status(self, provider_call_id: str) -> CallStatus:
        call = self._load(provider_call_id)
        if call is None:
            raise ProviderError(
                "no such simulated call", ErrorClass.VALIDATION, provider=self.name, status=404
            )
        if call.status not in FINAL_STATUSES and utcnow() >= as_utc(call.due_at):
            # Its callbacks were lost (process gone): the carrier still knows how it ended.
            self._record(call.call_sid, call.planned_status)
            call.status = call.planned_status
        return CallStatus(
            provider_call_id=call.call_sid,
            status=call.status,
            duration_seconds=call.duration_seconds if call.status == "completed" else 0,
            price_usd=self._price(call.duration_seconds) if call.status == "completed" else "",
        )

    def find_calls(self, to_e164: str, from_number: str, since: datetime) -> list[CallStatus]:
        try:
            with self._sessions() as session:
                rows = session.scalars(
                    select(SimulatedCall)
                    .where(
                        SimulatedCall.tenant == self.tenant,
                        SimulatedCall.to_hash == subject_hash(to_e164, self.config.pii_hash_key),
                        SimulatedCall.from_number == (from_number or self.config.from_number),
                        # `since` is real time, like a carrier's; our rows are on the service clock.
                        SimulatedCall.created_at >= since + clock.offset(),
                    )
                    .order_by(SimulatedCall.created_at)
                ).all()
        except OperationalError as err:
            raise ProviderError(
                "simulator database unavailable", ErrorClass.TEMPORARY, provider=self.name
            ) from err
        return [CallStatus(provider_call_id=r.call_sid, status=r.status) for r in rows]

    def _price(self, duration_seconds: int) -> str:
        minutes = math.ceil(duration_seconds / 60) if duration_seconds > 0 else 0
        return str((self.config.price_per_minute_usd * minutes).quantize(Decimal("0.0001")))

    def _load(self, call_sid: str) -> SimulatedCall | None:
        with self._sessions() as session:
            return session.scalars(
                select(SimulatedCall).where(
                    SimulatedCall.tenant == self.tenant, SimulatedCall.call_sid == call_sid
                )
            ).first()

    def _record(self, call_sid: str, status: str) -> None:
        now = utcnow()
        with self._engine.begin() as conn:
            conn.execute(
                _RECORD_STATUS,
                {
                    "b_tenant": self.tenant,
                    "b_call_sid": call_sid,
                    "b_status": status,
                    "b_now": now,
                    "b_ended_at": now if status in FINAL_STATUSES else None,
                },
            )

    def _schedule_callbacks(
        self, call_sid: str, from_number: str, duration: int, request: CallRequest, steps: list[str]
    ) -> None:
        for number, status in enumerate(steps, start=1):
            params = {
                "AccountSid": self.config.account_sid,
                "ApiVersion": "2010-04-01",
                "CallSid": call_sid,
                "CallStatus": status,
                "Direction": "outbound-api",
                "From": from_number,
                "Caller": from_number,
                "To": request.to_e164,
                "Called": request.to_e164,
                "CallbackSource": "call-progress-events",
                "SequenceNumber": str(number - 1),
                "Timestamp": format_datetime(utcnow(), usegmt=True),
            }
            if status in FINAL_STATUSES:
                params["CallDuration"] = str(duration)
                params["Duration"] = str(math.ceil(duration / 60))
                if status == "completed":
                    # Unlike Twilio's, the simulator's final callback carries the price (it knows
                    # it at once), so no price lookup follows a simulated call.
                    params["Price"] = "-" + self._price(duration)
                    params["PriceUnit"] = "USD"

            def record(sid: str = call_sid, s: str = status) -> None:
                self._record(sid, s)

            self._sender.schedule(
                self.config.step_seconds * number,
                request.status_callback_url,
                params,
                self.config.auth_token,
                before_send=record,
            )

"""ReserveCalls: the dial-time gate and reservation for many attempts at once.

A mixin of `ComplianceServicer`, with ReserveCall's rules item by item: the person's lock held
through gate and reservation, an attempt that already has a reservation answered the same
again, DIAL_NOW only with a reservation (else deferred with the limit's reason), every decision
audited. What changes is the cost: the attempts' earlier reservations are read in one query,
and every new reservation, contact attempt and audit record is written in ONE transaction. A
batch that meets a concurrent twin of one of its attempts is answered item by item through
ReserveCall instead (its Redis reservations are idempotent by attempt).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.json_format import ParseDict
from redis.lock import Lock
from sqlalchemy import insert, select, tuple_
from sqlalchemy.exc import IntegrityError

from leadflow.v1 import compliance_pb2, decision_pb2, lead_pb2, tenant_pb2
from leadflow_compliance import engine
from leadflow_compliance.accounting import (
    Accounts,
    Limits,
    ReserveResult,
    TenantDay,
    reservation_id_for,
    to_micros,
    usd,
)
from leadflow_compliance.decisions import Decider, Outcome, defer, lead_phone
from leadflow_compliance.models import AuditRow, ContactAttemptRow, ReservationRow
from leadflow_compliance.phone import InvalidPhone, analyse
from leadflow_compliance.repository import Repository, SubjectQuery, new_id
from leadflow_compliance.tenant_day import business_day
from leadflow_compliance.tenant_service import TenantCache
from leadflow_core import clock
from leadflow_core.timestamps import from_proto, utcnow

MAX_BATCH = 500
_BOOSTED = (lead_pb2.URGENCY_EMERGENCY, lead_pb2.URGENCY_HIGH)  # as ReserveCall boosts them


@dataclass
class _Call:
    index: int
    request: compliance_pb2.ReserveCallRequest
    tenant: tenant_pb2.Tenant
    subject: str
    estimate: int
    # The tenant day the reservation counts against, once the gate allows the call.
    day: TenantDay | None = None


def _item_error(code: grpc.StatusCode, message: str) -> compliance_pb2.ReserveCallsResponse.Item:
    return compliance_pb2.ReserveCallsResponse.Item(error_code=code.value[0], error_message=message)


def _reply(decision: decision_pb2.Decision, reservation_id: str) -> compliance_pb2.ReserveCallsResponse.Item:
    return compliance_pb2.ReserveCallsResponse.Item(
        reply=compliance_pb2.ReserveCallResponse(decision=decision, reservation_id=reservation_id)
    )


class ReserveBatchServicer:
    repo: Repository
    cache: TenantCache
    decider: Decider
    accounts: Accounts

    def ReserveCall(
        self, request: compliance_pb2.ReserveCallRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.ReserveCallResponse:  # pragma: no cover - the servicer's own
        raise NotImplementedError  # ComplianceServicer, which this is mixed into, defines it

    def ReserveCalls(
        self, request: compliance_pb2.ReserveCallsRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.ReserveCallsResponse:
        if len(request.calls) > MAX_BATCH:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"calls: at most {MAX_BATCH} per call")
        items: dict[int, compliance_pb2.ReserveCallsResponse.Item] = {}
        calls: list[_Call] = []
        later: list[_Call] = []
        people: set[tuple[str, str]] = set()
        for call in self._prepare(request.calls, items):
            # One attempt per person per batch: a person's attempt caps must see the attempt
            # before; a second one for the same person is answered after the batch.
            person = (call.tenant.name, call.subject)
            (later if person in people else calls).append(call)
            people.add(person)
        try:
            self._reserve(calls, items)
        except TimeoutError as err:
            context.abort(grpc.StatusCode.ABORTED, str(err))
        except IntegrityError:
            # A concurrent twin of one attempt: answer each through the one-attempt path.
            for call in calls:
                items[call.index] = self._one(call.request, context)
        for call in later:
            items[call.index] = self._one(call.request, context)
        return compliance_pb2.ReserveCallsResponse(items=[items[i] for i in range(len(request.calls))])

    def _one(
        self, request: compliance_pb2.ReserveCallRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.ReserveCallsResponse.Item:
        reply = self.ReserveCall(request, context)
        return compliance_pb2.ReserveCallsResponse.Item(reply=reply)

    def _prepare(
        self,
        requests: Sequence[compliance_pb2.ReserveCallRequest],
        items: dict[int, compliance_pb2.ReserveCallsResponse.Item],
    ) -> list[_Call]:
        calls: list[_Call] = []
        for i, r in enumerate(requests):
            if not r.HasField("lead") or not r.attempt_id:
                items[i] = _item_error(grpc.StatusCode.INVALID_ARGUMENT, "lead and attempt_id are required")
                continue
            tenant = self.cache.get(r.lead.tenant) if r.lead.tenant else None
            if tenant is None:
                items[i] = _item_error(grpc.StatusCode.NOT_FOUND, f"tenant {r.lead.tenant!r} not found")
                continue
            try:
                estimate = to_micros(r.estimated_cost_usd)
                subject = self.decider.subject(
                    analyse(lead_phone(r.lead), tenant.policy.default_region or "US").e164
                )
            except (ValueError, InvalidPhone) as err:
                items[i] = _item_error(grpc.StatusCode.INVALID_ARGUMENT, str(err))
                continue
            calls.append(_Call(i, r, tenant, subject, estimate))
        return calls

    def _existing(self, calls: Sequence[_Call]) -> dict[tuple[str, str], ReservationRow]:
        keys = [(c.tenant.name, c.request.attempt_id) for c in calls]
        if not keys:
            return {}
        with self.repo.sessions() as s:
            rows = s.scalars(
                select(ReservationRow).where(
                    tuple_(ReservationRow.tenant, ReservationRow.attempt_id).in_(keys)
                )
            ).all()
        return {(r.tenant, r.attempt_id): r for r in rows}

    @contextlib.contextmanager
    def _person_locks(self, calls: Sequence[_Call]) -> Iterator[None]:
        """Every person of the batch locked (ReserveCall's own locks), taken in one pipeline; a
        busy one is then waited for, in one order (two batches never wait on each other in a
        circle); all released in one pipeline however the batch ends."""
        people = sorted({(c.tenant.name, c.subject) for c in calls})
        locks = [self.accounts.person_lock(tenant, subject) for tenant, subject in people]
        tokens = [uuid.uuid4().hex for _ in locks]
        held: list[tuple[Lock, str]] = []
        try:
            pipe = self.accounts.client.pipeline(transaction=False)
            for lock, token in zip(locks, tokens, strict=True):
                pipe.set(lock.name, token, nx=True, px=int((lock.timeout or 30) * 1000))
            for lock, token, got in zip(locks, tokens, pipe.execute(), strict=True):
                if got or lock.acquire(token=token):
                    held.append((lock, token))
                else:
                    raise TimeoutError("a person's dial gate stayed busy")
            yield
        finally:
            if held:
                with contextlib.suppress(Exception):
                    release = self.accounts.client.pipeline(transaction=False)
                    for lock, token in held:
                        assert lock.lua_release is not None
                        lock.lua_release(keys=[lock.name], args=[token], client=release)
                    release.execute()

    def _reserve(
        self, calls: list[_Call], items: dict[int, compliance_pb2.ReserveCallsResponse.Item]
    ) -> None:
        from leadflow_compliance.compliance_service import call_estimate

        if not calls:
            return
        real_now = utcnow()
        rows: list[Any] = []
        audits: list[tuple[_Call, Outcome, decision_pb2.Decision, str, datetime]] = []
        with self._person_locks(calls):
            existing = self._existing(calls)
            to_decide: list[tuple[_Call, datetime, SubjectQuery]] = []
            for call in calls:
                r = call.request
                found = existing.get((call.tenant.name, r.attempt_id))
                if found is not None:
                    # The same attempt again (a redelivered job): the same answer.
                    items[call.index] = _reply(
                        ParseDict(found.decision, decision_pb2.Decision()), found.reservation_id
                    )
                    continue
                # The gate decides at our own time in production (a caller's instant is a test hook).
                now = real_now if clock.production() else (from_proto(r.evaluate_at) or real_now)
                try:
                    query = self.decider.query(call.tenant, r.lead, now, record_consent=False)
                except InvalidPhone as err:
                    items[call.index] = _item_error(grpc.StatusCode.INVALID_ARGUMENT, str(err))
                    continue
                to_decide.append((call, now, query))
            # Every person of the batch read in one statement, as EvaluateBatch does (a read per
            # call was over 40 % of compliance's CPU on the dial path). Nothing is written before
            # `_write`, so each call sees what its own read would have seen.
            states = self.repo.subject_states([q for _, _, q in to_decide])
            decided: list[tuple[_Call, Outcome, datetime]] = []
            for (call, now, _), state in zip(to_decide, states, strict=True):
                outcome = self.decider.decide(
                    call.tenant, call.request.lead, now, record_consent=False, actor="dial", state=state
                )
                decided.append((call, outcome, now))
            # Every allowed call's reservation in one pipeline (each its own atomic script),
            # priced by the rate card (unless the caller named an estimate), on its tenant's day by
            # the service clock.
            asks: list[tuple[str, str, Limits, int, TenantDay]] = []
            for c, o, _ in decided:
                if o.verdict.action == "dial_now":
                    if not c.request.estimated_cost_usd:
                        c.estimate = call_estimate(c.tenant, o)
                    c.day = business_day(c.tenant.timezone, real_now)
                    reservation_id = reservation_id_for(c.tenant.name, c.request.attempt_id)
                    asks.append((c.tenant.name, reservation_id, self._limits(c), c.estimate, c.day))
            results = iter(self.accounts.reserve_many(asks, real_now))
            for call, outcome, now in decided:
                result = next(results) if outcome.verdict.action == "dial_now" else None
                decision, reservation_id = self._gate(call, outcome, result, now, real_now, rows)
                items[call.index] = _reply(decision, reservation_id)
                audits.append((call, outcome, decision, reservation_id, now))
            self._write(rows, audits, real_now)

    @staticmethod
    def _limits(call: _Call) -> Limits:
        from leadflow_compliance.compliance_service import limits_of

        limits = limits_of(call.tenant)
        if call.request.lead.urgency in _BOOSTED:
            limits = limits.boosted(call.tenant.limits.priority_boost_percent)
        return limits

    def _gate(
        self,
        call: _Call,
        outcome: Outcome,
        result: ReserveResult | None,
        now: datetime,
        real_now: datetime,
        rows: list[Any],
    ) -> tuple[decision_pb2.Decision, str]:
        from leadflow_compliance.compliance_service import decision_json, retry_instant

        decision = outcome.decision
        if result is None:
            return decision, ""
        tenant = call.tenant
        reservation_id = reservation_id_for(tenant.name, call.request.attempt_id)
        if not result.reserved:
            retry_at = retry_instant(result, now, real_now)
            finding = engine.Finding(
                f"tenant.limit.{result.detail}",
                f"the tenant's {result.detail} limit is reached",
                "tenant limits",
                "defer",
                retry_at,
            )
            return defer(decision, finding), ""
        assert call.day is not None  # set for every call the gate allowed
        rows.append(
            ReservationRow(
                reservation_id=reservation_id,
                tenant=tenant.name,
                attempt_id=call.request.attempt_id,
                subject_hash=outcome.subject,
                created_at=real_now,
                decision=decision_json(decision),
                estimated_cost_usd=usd(call.estimate),
                day=call.day.date,
                estimate_micros=call.estimate,
            )
        )
        rows.append(
            ContactAttemptRow(
                tenant=tenant.name,
                subject_hash=outcome.subject,
                at=now,
                channel="call",
                reservation_id=reservation_id,
            )
        )
        return decision, reservation_id

    def _write(
        self,
        rows: list[Any],
        audits: Sequence[tuple[_Call, Outcome, decision_pb2.Decision, str, datetime]],
        at: datetime,
    ) -> None:
        from leadflow_compliance.compliance_service import decision_json

        if not rows and not audits:
            return
        reservations = [_columns(r) for r in rows if isinstance(r, ReservationRow)]
        attempts = [_columns(r) for r in rows if isinstance(r, ContactAttemptRow)]
        records = [
            {
                "record_id": new_id(),
                "tenant": call.tenant.name,
                "at": at,
                "actor": "dial",
                "action": "reserve",
                "lead_id": call.request.lead.lead_id,
                "subject_hash": outcome.subject,
                "decision": decision_json(decision),
                "rules_version": outcome.verdict.rules_version,
                "detail": {
                    "attempt_id": call.request.attempt_id,
                    "reservation_id": reservation_id,
                    "evaluate_at": now.isoformat(),
                    "states": list(outcome.verdict.states),
                    "zones": list(outcome.verdict.zones),
                    "line_type": outcome.phone.line_type,
                    "region": outcome.phone.region,
                },
            }
            for call, outcome, decision, reservation_id, now in audits
        ]
        # One transaction, one statement per table. An executemany with RETURNING goes out as
        # one multi-row INSERT (SQLAlchemy's "insertmanyvalues") from a statement compiled once
        # per process; `.values(rows)` was compiled anew for every batch, and cost more CPU than
        # the rest of the reservation. Reservations first: a twin of one fails the batch early.
        with self.repo.sessions.begin() as s:
            conn = s.connection()
            for table, key, values in (
                (ReservationRow, ReservationRow.reservation_id, reservations),
                (ContactAttemptRow, ContactAttemptRow.id, attempts),
                (AuditRow, AuditRow.record_id, records),
            ):
                if values:
                    conn.execute(insert(table).returning(key), values).all()


def _columns(row: Any) -> dict[str, Any]:
    """A new ORM row as the same full set of columns for every row of a Core multi-row insert
    (scalar defaults filled in; a generated primary key left to the database)."""
    values: dict[str, Any] = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        if value is None and column.primary_key:
            continue
        if value is None and column.default is not None and column.default.is_scalar:
            value = column.default.arg
        values[column.key] = value
    return values

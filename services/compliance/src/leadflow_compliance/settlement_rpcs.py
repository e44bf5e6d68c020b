"""SettleCall and SettleCalls: a call's reservation released (never placed) or settled at its
price, in PostgreSQL first and then in Redis's day totals, each once.

A mixin of `ComplianceServicer`. SettleCalls answers every item as SettleCall would; what changes
is the cost of the common case, placed calls settling for the first time: their reservations
are settled in ONE transaction (one guarded UPDATE per distinct outcome and price, their audit
records in one INSERT) and Redis's totals in one pipeline. The rest (a release, a second report
of one reservation in the batch) goes through SettleCall, item by item.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc

from leadflow.v1 import compliance_pb2, tenant_pb2
from leadflow_compliance.accounting import Accounts, price_micros
from leadflow_compliance.opt_out import is_opt_out
from leadflow_compliance.repository import Repository, Settlement, Settling
from leadflow_compliance.tenant_service import TenantCache
from leadflow_core import grpc_errors
from leadflow_core.grpc_authz import audit_actor
from leadflow_core.grpc_batch import run_item
from leadflow_core.timestamps import utcnow

OUTCOMES = {
    compliance_pb2.CALL_OUTCOME_UNSPECIFIED: "completed",
    compliance_pb2.CALL_OUTCOME_NOT_PLACED: "not_placed",
    compliance_pb2.CALL_OUTCOME_COMPLETED: "completed",
    compliance_pb2.CALL_OUTCOME_BUSY: "busy",
    compliance_pb2.CALL_OUTCOME_NO_ANSWER: "no_answer",
    compliance_pb2.CALL_OUTCOME_FAILED: "failed",
    compliance_pb2.CALL_OUTCOME_CANCELED: "canceled",
}
MAX_BATCH = 500

Item = compliance_pb2.SettleCallsResponse.Item


@dataclass(frozen=True)
class _Settle:
    """One report, checked: what SettleCall and SettleCalls do with it."""

    request: compliance_pb2.SettleCallRequest
    tenant: str
    outcome: str
    price: int | None
    opted_out: bool
    record: dict[str, Any]

    @property
    def not_placed(self) -> bool:
        return self.outcome == "not_placed"

    def actual_micros(self, row: Settlement) -> int:
        """What Redis's day counts for this call: nothing if never placed, else the price
        PostgreSQL settled at (this one, or an earlier report's), else the estimate."""
        if self.not_placed:
            return 0
        settled_at_price = row.actual_micros if not row.stored else self.price
        return row.estimate_micros if settled_at_price is None else settled_at_price


def _checked(request: compliance_pb2.SettleCallRequest, tenant: str, now: datetime) -> _Settle:
    """Raises ValueError for a price that is not one."""
    price = price_micros(request.actual_cost_usd) if request.actual_cost_usd else None
    outcome = OUTCOMES.get(request.outcome, "completed")
    opted_out = request.opted_out or bool(request.transcript and is_opt_out(request.transcript))
    record: dict[str, Any] = {
        "tenant": tenant,
        "at": now,
        "actor": audit_actor(),
        "action": "settle",
        "detail": {
            "reservation_id": request.reservation_id,
            "outcome": outcome,
            "actual_cost_usd": request.actual_cost_usd,
            "duration_seconds": request.duration_seconds,
            "consent_revoked": opted_out,
        },
    }
    return _Settle(request, tenant, outcome, price, opted_out, record)


def _item_error(code: grpc.StatusCode, message: str) -> compliance_pb2.SettleCallsResponse.Item:
    return Item(error_code=code.value[0], error_message=message)


class SettlementRpcs:
    """Mixed into ComplianceServicer, which provides these attributes and `_tenant`."""

    repo: Repository
    accounts: Accounts
    cache: TenantCache

    _tenant: Callable[[grpc.ServicerContext, str], tenant_pb2.Tenant]

    def SettleCall(
        self, request: compliance_pb2.SettleCallRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.SettleCallResponse:
        tenant = self._tenant(context, request.tenant)
        now = utcnow()
        try:
            s = _checked(request, tenant.name, now)
        except ValueError as err:
            grpc_errors.invalid_argument(context, "actual_cost_usd", str(err))
        # PostgreSQL first: a Redis day rebuilt in between reads either the held estimate (and
        # keeps the reservation held, so the Redis settlement below moves it) or this price. The
        # settlement's audit record is in the same commit.
        row = self.repo.settle_reservation(
            s.tenant, request.reservation_id, s.outcome, request.actual_cost_usd or "", now, s.price, s.record
        )
        if row is None:
            return self._unknown(s)
        settled = self.accounts.settle(
            s.tenant, row.reservation_id, s.not_placed, s.actual_micros(row), row.created_at
        )
        return self._after(s, row, settled, now)

    def SettleCalls(
        self, request: compliance_pb2.SettleCallsRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.SettleCallsResponse:
        if len(request.calls) > MAX_BATCH:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"calls: at most {MAX_BATCH} per call")
        now = utcnow()
        items: dict[int, compliance_pb2.SettleCallsResponse.Item] = {}
        together: dict[int, _Settle] = {}
        alone: list[int] = []
        seen: set[tuple[str, str]] = set()
        for i, r in enumerate(request.calls):
            tenant = self.cache.get(r.tenant) if r.tenant else None
            if tenant is None:
                items[i] = _item_error(grpc.StatusCode.NOT_FOUND, f"tenant {r.tenant!r} not found")
                continue
            try:
                s = _checked(r, tenant.name, now)
            except ValueError as err:
                items[i] = _item_error(grpc.StatusCode.INVALID_ARGUMENT, f"actual_cost_usd: {err}")
                continue
            key = (tenant.name, r.reservation_id)
            # A release deletes rows of two tables, and a second report of one reservation must
            # see the first one's settlement: both go through SettleCall after the rest.
            if s.not_placed or key in seen:
                alone.append(i)
            else:
                together[i] = s
            seen.add(key)
        for i, reply in self._settle_together(together, now).items():
            items[i] = Item(reply=reply)
        for i in alone:
            # An abort there (the tenant deleted meanwhile) fails this item, not the batch.
            answer = run_item(context, functools.partial(self.SettleCall, request.calls[i]))
            if isinstance(answer, compliance_pb2.SettleCallResponse):
                items[i] = Item(reply=answer)
            else:
                items[i] = Item(error_code=answer.code, error_message=answer.message)
        return compliance_pb2.SettleCallsResponse(items=[items[i] for i in range(len(request.calls))])

    def _settle_together(
        self, calls: dict[int, _Settle], now: datetime
    ) -> dict[int, compliance_pb2.SettleCallResponse]:
        if not calls:
            return {}
        order = list(calls)
        rows = self.repo.settle_reservations(
            [
                Settling(
                    s.tenant,
                    s.request.reservation_id,
                    s.outcome,
                    s.request.actual_cost_usd or "",
                    s.price,
                    s.record,
                )
                for s in (calls[i] for i in order)
            ],
            now,
        )
        found = [(i, row) for i, row in zip(order, rows, strict=True) if row is not None]
        settled = self.accounts.settle_many(
            [(calls[i].tenant, row.reservation_id, False, calls[i].actual_micros(row)) for i, row in found]
        )
        replies = {i: self._unknown(calls[i]) for i, row in zip(order, rows, strict=True) if row is None}
        for (i, row), done in zip(found, settled, strict=True):
            replies[i] = self._after(calls[i], row, done, now)
        return replies

    def _unknown(self, s: _Settle) -> compliance_pb2.SettleCallResponse:
        # Unknown, or already released: settling is idempotent, callbacks are redelivered. A
        # release whose Redis part failed after PostgreSQL forgot the reservation is redone.
        if s.not_placed:
            self.accounts.settle(s.tenant, s.request.reservation_id, True, 0, utcnow())
        return compliance_pb2.SettleCallResponse(settled=False)

    def _after(
        self, s: _Settle, row: Settlement, settled: bool, now: datetime
    ) -> compliance_pb2.SettleCallResponse:
        """What follows PostgreSQL's and Redis's parts: the price of a call settled before at its
        estimate, a revocation heard in the call, the record of a retry that found PostgreSQL's
        part done."""
        already = not row.stored
        repriced = (
            already
            and s.price is not None
            and not s.not_placed
            and self._reprice(s.tenant, row, s.request, s.price, now)
        )
        if s.opted_out:
            self.repo.revoke(s.tenant, row.subject_hash, now, "call", "opt-out during call", "dial")
        if already and (settled or s.opted_out):
            # A retry that found PostgreSQL's part done (its record written then) and did Redis's.
            self.repo.audit_many([{**s.record, "subject": row.subject_hash}])
        return compliance_pb2.SettleCallResponse(
            settled=settled or row.stored or repriced, consent_revoked=s.opted_out
        )

    def _reprice(
        self,
        tenant: str,
        row: Settlement,
        request: compliance_pb2.SettleCallRequest,
        price: int,
        now: datetime,
    ) -> bool:
        if row.actual_micros is not None:
            return False  # a price once settled is never replaced
        # Redis first, once per reservation: a retry after a crash between the two finds Redis
        # done and still writes PostgreSQL; a Redis that lost the reservation rebuilds the day
        # from PostgreSQL, which then has the price.
        self.accounts.reprice(tenant, row.reservation_id, price)
        if not self.repo.price_reservation(tenant, row.reservation_id, request.actual_cost_usd, price):
            return False
        self.repo.audit(
            tenant=tenant,
            at=now,
            actor=audit_actor(),
            action="settle_price",
            subject=row.subject_hash,
            detail={
                "reservation_id": row.reservation_id,
                "actual_cost_usd": request.actual_cost_usd,
                "estimate_micros": row.estimate_micros,
            },
        )
        return True

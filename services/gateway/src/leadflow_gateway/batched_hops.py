"""The gateway's hops, batched: concurrent requests share one `AuthenticateApiKeys` (direct-API
requests), one `EvaluateBatch`, one `SubmitLeads` and one `RecordCallStatuses` (status
callbacks) call, flushed on size or after a couple of milliseconds, and each request gets its
own answer back. Nothing else in the gateway knows about batches.

A lead the service refuses on its own (bad phone, unknown tenant) fails alone, with the same
error the single-lead RPC would give; a failed batch call (service down, its transaction failed)
fails every lead of that batch with the same 503, and the dispatcher stored none of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
import grpc.aio

from leadflow.v1 import (
    batch_pb2,
    compliance_pb2,
    compliance_pb2_grpc,
    decision_pb2,
    dispatcher_pb2,
    dispatcher_pb2_grpc,
    tenants_pb2,
    tenants_pb2_grpc,
)
from leadflow_core.batcher import MicroBatcher
from leadflow_core.grpc_batch import batch_request_ids, status_code
from leadflow_core.request_context import current_request_id
from leadflow_gateway.errors import GatewayError
from leadflow_gateway.metrics import DEPENDENCY

EvaluateRequest = compliance_pb2.EvaluateRequest
Decision = decision_pb2.Decision
SubmitLeadRequest = dispatcher_pb2.SubmitLeadRequest
SubmitLeadResponse = dispatcher_pb2.SubmitLeadResponse
CallStatus = dispatcher_pb2.RecordCallStatusRequest
CallStatusAnswer = dispatcher_pb2.RecordCallStatusResponse
ErrorOf = Callable[[grpc.StatusCode, str, list[tuple[str, str]], str], GatewayError]
KeyCheck = tenants_pb2.AuthenticateApiKeyResponse
# A whole key check refused for these reasons refuses each key (401), as one key's check would.
_KEYS_REFUSED = (
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
)


class BatchedHops:
    def __init__(
        self,
        compliance: compliance_pb2_grpc.ComplianceServiceAsyncStub,
        dispatcher: dispatcher_pb2_grpc.DispatcherServiceAsyncStub,
        tenants: tenants_pb2_grpc.TenantAdminServiceAsyncStub,
        timeout: float,
        error_of: ErrorOf,
        rpc_error: Callable[[grpc.aio.AioRpcError, str], GatewayError],
        max_size: int,
        max_delay_seconds: float,
        max_in_flight: int = 0,
    ) -> None:
        self._compliance = compliance
        self._tenants = tenants
        self._dispatcher = dispatcher
        self._timeout = timeout
        self._error_of = error_of
        self._rpc_error = rpc_error
        self._evaluations: MicroBatcher[tuple[EvaluateRequest, str], Decision] = MicroBatcher(
            self._evaluate_batch, max_size, max_delay_seconds, max_in_flight
        )
        self._submissions: MicroBatcher[tuple[SubmitLeadRequest, str], SubmitLeadResponse] = MicroBatcher(
            self._submit_batch, max_size, max_delay_seconds, max_in_flight
        )
        self._call_statuses: MicroBatcher[tuple[CallStatus, str], CallStatusAnswer] = MicroBatcher(
            self._call_status_batch, max_size, max_delay_seconds, max_in_flight
        )
        self._key_checks: MicroBatcher[tuple[str, str], KeyCheck] = MicroBatcher(
            self._authenticate_batch, max_size, max_delay_seconds, max_in_flight
        )

    async def authenticate(self, api_key: str) -> KeyCheck:
        """The key's tenant, id and scopes (no tenant: refused). Still asked of compliance for
        every request, so a revoked key is refused at once; only the call is shared."""
        return await self._key_checks.submit((api_key, current_request_id()))

    async def evaluate(self, request: compliance_pb2.EvaluateRequest) -> decision_pb2.Decision:
        return await self._evaluations.submit((request, current_request_id()))

    async def submit(self, request: dispatcher_pb2.SubmitLeadRequest) -> dispatcher_pb2.SubmitLeadResponse:
        return await self._submissions.submit((request, current_request_id()))

    async def record_call_status(self, request: CallStatus) -> CallStatusAnswer:
        return await self._call_statuses.submit((request, current_request_id()))

    async def close(self) -> None:
        await self._evaluations.close()
        await self._submissions.close()
        await self._call_statuses.close()
        await self._key_checks.close()

    def _item_error(self, error: batch_pb2.ItemError, what: str) -> GatewayError:
        violations = [(error.field, error.field_description)] if error.field else []
        return self._error_of(status_code(error), error.message, violations, what)

    async def _evaluate_batch(
        self, items: list[tuple[EvaluateRequest, str]]
    ) -> Sequence[decision_pb2.Decision | BaseException]:
        try:
            with DEPENDENCY.labels(call="evaluate").time():
                resp = await self._compliance.EvaluateBatch(
                    compliance_pb2.EvaluateBatchRequest(requests=[r for r, _ in items]),
                    timeout=self._timeout,
                    metadata=batch_request_ids([rid for _, rid in items]),
                )
        except grpc.aio.AioRpcError as err:
            raise self._rpc_error(err, "compliance") from err
        return [
            r.response.decision
            if r.WhichOneof("outcome") == "response"
            else self._item_error(r.error, "compliance")
            for r in resp.results
        ]

    async def _submit_batch(
        self, items: list[tuple[SubmitLeadRequest, str]]
    ) -> Sequence[dispatcher_pb2.SubmitLeadResponse | BaseException]:
        try:
            with DEPENDENCY.labels(call="submit").time():
                resp = await self._dispatcher.SubmitLeads(
                    dispatcher_pb2.SubmitLeadsRequest(requests=[r for r, _ in items]),
                    timeout=self._timeout,
                    metadata=batch_request_ids([rid for _, rid in items]),
                )
        except grpc.aio.AioRpcError as err:
            raise self._rpc_error(err, "dispatcher") from err
        return [
            r.response if r.WhichOneof("outcome") == "response" else self._item_error(r.error, "dispatcher")
            for r in resp.results
        ]

    async def _call_status_batch(
        self, items: list[tuple[CallStatus, str]]
    ) -> Sequence[CallStatusAnswer | BaseException]:
        try:
            with DEPENDENCY.labels(call="record_call_status").time():
                resp = await self._dispatcher.RecordCallStatuses(
                    dispatcher_pb2.RecordCallStatusesRequest(requests=[r for r, _ in items]),
                    timeout=self._timeout,
                    metadata=batch_request_ids([rid for _, rid in items]),
                )
        except grpc.aio.AioRpcError as err:
            raise self._rpc_error(err, "dispatcher") from err
        return [
            r.response if r.WhichOneof("outcome") == "response" else self._item_error(r.error, "dispatcher")
            for r in resp.results
        ]

    async def _authenticate_batch(self, items: list[tuple[str, str]]) -> Sequence[KeyCheck | BaseException]:
        try:
            with DEPENDENCY.labels(call="authenticate").time():
                resp = await self._tenants.AuthenticateApiKeys(
                    tenants_pb2.AuthenticateApiKeysRequest(api_keys=[key for key, _ in items]),
                    timeout=self._timeout,
                    metadata=batch_request_ids([rid for _, rid in items]),
                )
        except grpc.aio.AioRpcError as err:
            if err.code() in _KEYS_REFUSED:
                return [KeyCheck() for _ in items]
            raise self._rpc_error(err, "authentication") from err
        if len(resp.results) != len(items):
            raise self._error_of(grpc.StatusCode.INTERNAL, "one answer per key expected", [], "compliance")
        return list(resp.results)

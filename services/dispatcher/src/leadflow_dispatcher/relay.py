"""The outbox relay: hands due work to Dramatiq, re-sends overdue work, settles ended calls.

One loop does it all, every `relay_interval_seconds`:
- pending jobs due within Dramatiq's short-delay horizon are enqueued (deferred dials wait in
  the database until then);
- messages a dead worker had fetched (running or prefetched) go back on their queues once its
  heartbeat is older than the heartbeat timeout (Dramatiq's own maintenance, run on purpose);
- queued jobs whose lease ran out without a "done" report are enqueued again: Redis lost them
  (restart, failover, flush) or a dispatcher died between its commit and the enqueue;
- ended calls are settled with compliance (cost, concurrency slot);
- placed calls without a final callback for too long get a `call_status` job that asks the
  provider.
Several dispatcher replicas may run it: rows are taken with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence

import grpc
from dramatiq.brokers.redis import RedisBroker

from leadflow.v1 import compliance_pb2, compliance_pb2_grpc
from leadflow_core import cost_counters
from leadflow_core.grpc_batch import code_of
from leadflow_core.logs import get_logger
from leadflow_dispatcher import queueing, scheduling
from leadflow_dispatcher.queue_pauses import QueuePauses
from leadflow_dispatcher.queueing import JobSpec
from leadflow_dispatcher.settings import DispatcherSettings
from leadflow_dispatcher.store import SettleOutcome, Store

log = get_logger("leadflow.dispatcher.relay")


class Relay:
    def __init__(
        self,
        store: Store,
        broker: RedisBroker,
        compliance: compliance_pb2_grpc.ComplianceServiceStub,
        settings: DispatcherSettings,
        pauses: QueuePauses | None = None,
    ) -> None:
        self.store = store
        # Paused queues' work stays pending in the outbox (see queue_pauses).
        self.pauses = pauses
        self.broker = broker
        self.compliance = compliance
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        # Where SubmitLead's messages went, written in batches off the request path.
        self._notes: queue.Queue[tuple[str, str, str] | None] = queue.Queue()
        self._noter = threading.Thread(target=self._note_loop, name="relay-notes", daemon=True)
        self._next_recovery = 0.0

    def start(self) -> None:
        self._thread.start()
        self._noter.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._notes.put(None)
        self._noter.join(10)

    def send(self, jobs: Sequence[tuple[JobSpec, float]], note_later: bool = False) -> int:
        """Enqueue jobs already marked queued; on a broker failure put them back to pending.

        `note_later` (the SubmitLead path) records the messages' Redis ids in a background batch
        instead of one more transaction per request. Safe: the ids only help the sweeper tell a
        lost message from a waiting one once a lease has run out (minutes); a job whose id was
        never noted (a crash) is simply enqueued again, as after a crash before this write."""
        sent: list[tuple[str, str, str]] = []
        failed: list[JobSpec] = []
        held: list[JobSpec] = []
        paused = self.pauses.paused() if self.pauses is not None else {}
        ready: list[tuple[JobSpec, float]] = []
        for job, delay in jobs:
            if job.queue in paused:
                held.append(job)
            else:
                ready.append((job, delay))
        # One pipeline for every message of this call (a lead's enrich, crm_sync and dial).
        for (job, _), result in zip(ready, queueing.enqueue_many(self.broker, ready), strict=True):
            if isinstance(result, BaseException):
                log.warning("enqueue_failed", job=job.kind, lead_id=job.lead_id, error=str(result))
                failed.append(job)
            else:
                sent.append((job.job_id, *result))
        if failed:
            self.store.release_jobs(failed, "broker unavailable")
        if held:
            self.store.release_jobs(held, "queue paused")
        if note_later and self._noter.is_alive():
            for item in sent:
                self._notes.put(item)
        else:
            self.store.note_enqueued(sent)
        return len(sent)

    def _note_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._notes.get()
            batch: list[tuple[str, str, str]] = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            # Everything that piled up meanwhile goes in the same transaction.
            while len(batch) < 500:
                try:
                    item = self._notes.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            if not batch:
                continue
            try:
                self.store.note_enqueued(batch)
            except Exception:
                log.exception("note_enqueued_failed", count=len(batch))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # Paid per pass whatever the load: counted apart from per-lead work.
                with cost_counters.background():
                    self.tick()
            except Exception:
                log.exception("relay_tick_failed")
            self._stop.wait(self.settings.relay_interval_seconds)

    def tick(self) -> int:
        s = self.settings
        self.store.calls_to_reconcile(s.call_status_timeout_seconds, s.relay_batch_size)
        self._recover_dead_workers()
        self._sweep()
        moved = 0
        while True:
            paused = self.pauses.paused() if self.pauses is not None else {}
            due = self.store.claim_due_jobs(
                s.max_broker_delay_seconds, s.job_lease_seconds, s.relay_batch_size, tuple(paused)
            )
            if not due:
                break
            moved += self.send(due)
            if len(due) < s.relay_batch_size:
                break
        self._settle()
        return moved

    def _recover_dead_workers(self) -> None:
        now = time.monotonic()
        if now < self._next_recovery:
            return
        self._next_recovery = now + self.settings.dead_worker_check_seconds
        try:
            dead = queueing.recover_dead_workers(self.broker)
        except Exception as err:
            log.warning("dead_worker_check_skipped", error=str(err))
            return
        if dead:
            log.info("dead_workers_recovered", workers=len(dead))

    def _sweep(self) -> None:
        """Overdue work: still in Redis (a backlog, a retry's delay) gets a longer lease; lost
        work, or work held too long by a worker that died, is enqueued again."""
        s = self.settings
        expired = self.store.expired_jobs(s.relay_batch_size)
        if not expired:
            return
        try:
            present = queueing.message_present(
                self.broker, [(job.broker_queue, job.broker_message_id) for job in expired]
            )
        except Exception as err:
            log.warning("sweep_skipped", error=str(err))
            return
        keep = [
            job.job_id
            for job, here in zip(expired, present, strict=True)
            if here and job.age_seconds < s.job_stuck_seconds
        ]
        lost = [job.job_id for job in expired if job.job_id not in set(keep)]
        self.store.extend_leases(keep, s.job_lease_seconds)
        if lost:
            log.info("jobs_resent", count=len(lost))
            self.store.resend(lost)

    def _settle(self) -> None:
        """The pass's ended calls in one SettleCalls; each item's error is that call's alone."""
        due = self.store.due_settlements(self.settings.relay_batch_size)
        if not due:
            return
        requests = [
            compliance_pb2.SettleCallRequest(
                tenant=work.tenant,
                reservation_id=work.reservation_id,
                outcome=_outcome(work.status),
                actual_cost_usd=work.price_usd,
                duration_seconds=work.duration_seconds,
            )
            for work in due
        ]
        try:
            items = self.compliance.SettleCalls(
                compliance_pb2.SettleCallsRequest(calls=requests), timeout=10.0
            ).items
            answers = [(code_of(item.error_code), item.error_message, True) for item in items]
        except grpc.RpcError as err:
            # The call as a whole failed: no item was refused for itself, every one is retried.
            answers = [(err.code(), str(err.details()), False)] * len(due)
        outcomes: list[SettleOutcome] = []
        for work, (code, message, its_own) in zip(due, answers, strict=True):
            if code == grpc.StatusCode.OK:
                outcomes.append(SettleOutcome(work.job_id))
                continue
            error = f"{code}: {message}"
            if its_own and code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                # Nothing to settle against: retrying cannot help.
                outcomes.append(SettleOutcome(work.job_id, error))
            else:
                outcomes.append(SettleOutcome(work.job_id, error, 5.0))
        # Recorded together after the pass: a crash before this commit settles those calls
        # again, which compliance answers as already settled (settling is idempotent).
        self.store.finish_settlements(outcomes)


def _outcome(status: str) -> compliance_pb2.CallOutcome.ValueType:
    if status == "not-placed":
        return compliance_pb2.CALL_OUTCOME_NOT_PLACED
    return compliance_pb2.CallOutcome.ValueType(
        scheduling.CALL_OUTCOMES.get(status, compliance_pb2.CALL_OUTCOME_FAILED)
    )

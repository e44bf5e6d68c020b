"""Deletes inbound requests older than each tenant's retention, every few minutes."""

from __future__ import annotations

import threading

from leadflow_core import cost_counters
from leadflow_core.logs import get_logger
from leadflow_dispatcher.policies import TenantPolicies
from leadflow_dispatcher.store import Store

log = get_logger("leadflow.dispatcher.request_log")


class RequestLogSweeper:
    def __init__(self, store: Store, policies: TenantPolicies, interval_seconds: float) -> None:
        self.store = store
        self.policies = policies
        self.interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="request-log-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def sweep(self) -> int:
        deleted = self.store.sweep_requests(
            lambda tenant: self.policies.get(tenant).request_log_retention_days
        )
        if deleted:
            log.info("request_log_swept", deleted=deleted)
        return deleted

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with cost_counters.background():
                    self.sweep()
            except Exception:
                log.exception("request_log_sweep_failed")

"""The recovery timings of the dispatcher and the workers agree with each other (defaults).

They live in two services' settings; a change to one that breaks the relation fails here."""

from __future__ import annotations

from leadflow_dispatcher.settings import DispatcherSettings
from leadflow_enrichment.settings import WorkerSettings


def test_recovery_timings_agree() -> None:
    d, w = DispatcherSettings(), WorkerSettings()
    # The heartbeat and the dead-worker timeout are one contract (CommonSettings).
    assert d.worker_heartbeat_timeout_seconds == w.worker_heartbeat_timeout_seconds
    # A live worker beats several times within the timeout (a slow beat is not a death).
    assert w.worker_heartbeat_seconds * 3 <= w.worker_heartbeat_timeout_seconds
    # A dead worker's work is back in flight within 60 s of its death.
    assert d.worker_heartbeat_timeout_seconds + d.dead_worker_check_seconds + d.relay_interval_seconds <= 60
    # A live dial is over before its claim could be taken for abandoned: never a second
    # worker on an attempt the first is still dialing.
    assert w.dial_time_limit_seconds < d.claim_stale_seconds
    # ...and a dead worker's claim is taken over within 60 s of its death (the waiting job asks
    # again every claim_poll_seconds).
    assert d.claim_stale_seconds + w.claim_poll_seconds + d.relay_interval_seconds <= 60
    # A dead worker's person lock frees that person's CRM sync within 60 s; a live one holds it
    # over a CRM lookup and a write, each bounded by the provider timeout (and the token fetch).
    assert w.person_lock_seconds + d.relay_interval_seconds <= 60
    assert w.person_lock_seconds >= 3 * w.provider_timeout_seconds + w.provider_connect_timeout_seconds
    # Work a lost Redis or dispatcher held is back in flight within 30 s of its return.
    assert d.job_lease_seconds <= 30
    # The last-resort resend never doubles a job still within its time limit.
    assert d.job_stuck_seconds > w.job_time_limit_seconds + w.worker_heartbeat_timeout_seconds

"""Sends queued events to the tenants' endpoints, signed per Standard Webhooks, with backoff.

Each attempt is recorded on the event's row (the delivery log). The `webhook-id` is the row's id,
the same on every retry, so a receiver can drop a repeat. The signature is Standard Webhooks'
v1: HMAC-SHA256 over "id.timestamp.body" keyed with the base64 part of the `whsec_` secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import grpc

from leadflow.v1 import tenants_pb2, tenants_pb2_grpc
from leadflow_core import cost_counters
from leadflow_core.clock import now as utcnow
from leadflow_core.logs import get_logger
from leadflow_core.tenant_spec import event_endpoint_kind
from leadflow_dispatcher.events import DueDelivery
from leadflow_dispatcher.settings import DispatcherSettings
from leadflow_dispatcher.store import Store

log = get_logger("leadflow.dispatcher.events")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new address to post the event to (it fails the attempt)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError("the endpoint's secret is not whsec_<base64>") from err
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def retry_at(attempts_done: int, settings: DispatcherSettings, now: datetime) -> datetime | None:
    """Exponential backoff after the `attempts_done`th failure; None once attempts are used up."""
    if attempts_done >= settings.event_max_attempts:
        return None
    delay = min(
        settings.event_min_backoff_seconds * 2 ** (attempts_done - 1), settings.event_max_backoff_seconds
    )
    return now + timedelta(seconds=delay)


class EventDeliverer:
    def __init__(
        self, store: Store, tenants: tenants_pb2_grpc.TenantAdminServiceStub, settings: DispatcherSettings
    ) -> None:
        self.store = store
        self.tenants = tenants
        self.settings = settings
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(settings.event_delivery_concurrency, thread_name_prefix="event-send")
        self._thread = threading.Thread(target=self._run, name="event-deliverer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def deliver_due(self) -> int:
        due = self.store.claim_due_deliveries(
            self.settings.event_delivery_batch_size, self.settings.event_delivery_lease_seconds
        )
        list(self._pool.map(self._deliver, due))
        return len(due)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.event_delivery_interval_seconds):
            try:
                with cost_counters.background():
                    self.deliver_due()
            except Exception:
                log.exception("event_delivery_failed")

    def _deliver(self, d: DueDelivery) -> None:
        status, error = self._send(d)
        done = d.attempts + 1
        later = None if 200 <= status < 300 else retry_at(done, self.settings, utcnow())
        if status == -1:
            later = None  # the endpoint is gone or misconfigured: retrying cannot help
        self.store.finish_delivery_attempt(d.id, max(status, 0), error, later)
        log.info(
            "event_delivery_attempt",
            tenant=d.tenant,
            endpoint=d.endpoint,
            id=d.id,
            status=status,
            attempt=done,
        )

    def _send(self, d: DueDelivery) -> tuple[int, str]:
        """(HTTP status or 0 when there was none, error); -1 when it must not be retried."""
        try:
            reply = self.tenants.GetProviderConfig(
                tenants_pb2.GetProviderConfigRequest(tenant=d.tenant, kind=event_endpoint_kind(d.endpoint)),
                timeout=5.0,
            )
        except grpc.RpcError as err:
            return 0, f"endpoint config unavailable: {err.code()}"
        url = reply.config.options.get("url", "")
        secret = reply.config.secrets.get("secret", "")
        if not url or not secret:
            return -1, "endpoint no longer configured (url or secret missing)"
        if not url.startswith(("http://", "https://")):
            return -1, "endpoint url is not http(s)"  # the spec allows only these; never file: etc.
        body = json.dumps(d.payload, separators=(",", ":")).encode()
        timestamp = int(time.time())
        try:
            signature = sign(secret, d.id, timestamp, body)
        except ValueError as err:
            return -1, str(err)
        request = urllib.request.Request(  # noqa: S310 (http(s) only, checked above)
            url,
            data=body,
            method="POST",
            headers={
                "content-type": "application/json",
                "webhook-id": d.id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature,
                "user-agent": "leadflow-events/1",
            },
        )
        try:
            with _OPENER.open(request, timeout=self.settings.event_delivery_timeout_seconds) as resp:
                return int(resp.status), ""
        except urllib.error.HTTPError as err:
            return int(err.code), f"HTTP {err.code}"
        except (urllib.error.URLError, OSError) as err:
            return 0, f"{type(err).__name__}: {err}"[:500]

"""Tenant changes announced through PostgreSQL LISTEN/NOTIFY: compliance announces every
committed change to a tenant (pause, resume, limits, budget) on `CHANNEL` with the tenant's name.

Every compliance process listens, so it can keep tenants cached for long and still honour a
pause or a limit change made through another process at once (within the notification's
delivery, milliseconds). The dispatcher listens too, and releases the tenant's deferred dials
at once instead of at their next recheck. The channel is a notice, not data: listeners read
what changed through the owner's API.

`announce(engine, name)` runs after the change has committed. `TenantChangeListener` holds one
connection that LISTENs and drops the named tenant from the cache; whenever it (re)connects it
empties the cache, because notifications sent while it was away are lost. While it is not
listening, the cache falls back to its short TTL."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine, make_url, text

from leadflow_core.db import is_sqlite
from leadflow_core.logs import get_logger

log = get_logger("leadflow.tenant_changes")

CHANNEL = "leadflow_tenant_changes"


def announce(engine: Engine, name: str) -> None:
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_notify(:channel, :name)"), {"channel": CHANNEL, "name": name})


class TenantChangeListener:
    def __init__(
        self, database_url: str, on_change: Callable[[str | None], None], retry_seconds: float = 1.0
    ) -> None:
        self._url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._on_change = on_change
        self._retry = retry_seconds
        self._stop = threading.Event()
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tenant-changes", daemon=True)

    @staticmethod
    def supported(database_url: str) -> bool:
        return not is_sqlite(database_url)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()  # the thread looks every second
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._on_change(None)  # whatever changed while nobody listened
                    self.listening.set()
                    while not self._stop.is_set():  # notifies() returns every second to look
                        for note in conn.notifies(timeout=1.0):
                            self._on_change(note.payload)
            except psycopg.Error as err:
                if not self._stop.is_set():
                    log.warning("tenant_changes_unavailable", error=type(err).__name__)
            finally:
                self.listening.clear()
            self._stop.wait(self._retry)

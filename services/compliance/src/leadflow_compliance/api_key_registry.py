"""A tenant's API keys: issued, verified, listed, revoked, and when each was last used.

The gateway asks compliance about the bearer key of every API request, so verification must be
cheap: a key verified once (an indexed read plus ~40 ms of scrypt) is remembered in memory, keyed by
its SHA-256, for `cache_seconds`. Revocation still takes effect at once: the revoking process drops
the key here and announces `api-key:<key id>` on the tenant-change channel (tenant_changes), and
every other compliance process drops it when the notification arrives. A process that is not
listening keeps verified keys for only `unlisted_cache_seconds`.

Last use is noted in memory and written by `flush_usage` (a timer in the server, and on shutdown)
in one statement for all keys used since: never a write per request."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from leadflow.v1 import tenants_pb2
from leadflow_compliance import api_key_hashing
from leadflow_compliance.models import ApiKeyRow
from leadflow_core.logs import get_logger
from leadflow_core.timestamps import to_proto

log = get_logger("leadflow.compliance.api_keys")

NOTE_PREFIX: Final = "api-key:"
# The key ApplyTenant issues with a new tenant; keys created without a name get `key-<key id>`.
FIRST_KEY_NAME: Final = "first"
_CACHE_LIMIT: Final = 10_000


class DuplicateKeyName(Exception):
    """Another valid key of the tenant has this name."""


@dataclass(frozen=True)
class VerifiedKey:
    key_id: str
    tenant: str
    scopes: tuple[str, ...]


def key_info(row: ApiKeyRow) -> tenants_pb2.ApiKeyInfo:
    info = tenants_pb2.ApiKeyInfo(
        key_id=row.key_id,
        name=row.name,
        prefix="" if row.lookup else api_key_hashing.display_prefix(row.key_id),
        scopes=row.scopes.split(","),
    )
    info.created_at.CopyFrom(to_proto(row.created_at))
    if row.revoked_at is not None:
        info.revoked_at.CopyFrom(to_proto(row.revoked_at))
    if row.last_used_at is not None:
        info.last_used_at.CopyFrom(to_proto(row.last_used_at))
    return info


class ApiKeyRegistry:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        announce: Callable[[str], None] | None = None,
        listening: threading.Event | None = None,
        cache_seconds: float = 300.0,
        unlisted_cache_seconds: float = 1.0,
    ) -> None:
        self._sessions = sessions
        self._announce = announce
        self._listening = listening or threading.Event()
        self._ttl = cache_seconds
        self._unlisted_ttl = unlisted_cache_seconds
        self._lock = threading.Lock()
        self._verified: dict[bytes, tuple[float, VerifiedKey]] = {}
        self._used: dict[str, datetime] = {}

    # --- issuing and revoking ------------------------------------------------------------------

    def create(
        self, tenant: str, name: str, scopes: tuple[str, ...], now: datetime, revoke_existing: bool
    ) -> tuple[str, ApiKeyRow]:
        """(the key, shown only now; its row)."""
        key_id, key = api_key_hashing.new_key()
        row = ApiKeyRow(
            key_id=key_id,
            tenant=tenant,
            name=name or f"key-{key_id}",
            lookup="",
            key_hash=api_key_hashing.hash_key(key),
            scopes=",".join(scopes),
            created_at=now,
        )
        revoked: list[str] = []
        try:
            with self._sessions.begin() as s:
                if revoke_existing:
                    for old in s.scalars(
                        sa.select(ApiKeyRow).where(ApiKeyRow.tenant == tenant, ApiKeyRow.revoked_at.is_(None))
                    ):
                        old.revoked_at = now
                        revoked.append(old.key_id)
                    s.flush()
                s.add(row)
        except IntegrityError as err:
            raise DuplicateKeyName(name) from err
        for old_id in revoked:
            self._forget(old_id)
        return key, row

    def revoke(self, tenant: str, key_id: str, now: datetime) -> ApiKeyRow | None:
        """The revoked key's row (revoked earlier: unchanged), or None for no such key of `tenant`."""
        with self._sessions.begin() as s:
            row = s.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None or row.tenant != tenant:
                return None
            if row.revoked_at is None:
                row.revoked_at = now
                s.flush()
            s.expunge(row)
        self._forget(key_id)
        return row

    def list(self, tenant: str) -> list[ApiKeyRow]:
        with self._sessions() as s:
            rows = s.scalars(
                sa.select(ApiKeyRow).where(ApiKeyRow.tenant == tenant).order_by(ApiKeyRow.created_at)
            ).all()
            for row in rows:
                s.expunge(row)
        return list(rows)

    def _forget(self, key_id: str) -> None:
        self.drop(key_id)
        if self._announce is not None:
            self._announce(NOTE_PREFIX + key_id)

    def drop(self, key_id: str | None) -> None:
        """Forget one verified key, or all (None: the change listener reconnected)."""
        with self._lock:
            if key_id is None:
                self._verified.clear()
                return
            for digest in [d for d, (_, k) in self._verified.items() if k.key_id == key_id]:
                del self._verified[digest]

    # --- verifying -----------------------------------------------------------------------------

    def verify(self, key: str, now: datetime) -> VerifiedKey | None:
        """The valid key `key` is, or None. Whether its tenant is active is the caller's check."""
        digest = hashlib.sha256(key.encode()).digest()
        clock = time.monotonic()
        with self._lock:
            hit = self._verified.get(digest)
        if hit is not None and hit[0] > clock:
            self._note_use(hit[1].key_id, now)
            return hit[1]
        found = self._verify_stored(key)
        if found is None:
            return None
        ttl = self._ttl if self._listening.is_set() else self._unlisted_ttl
        with self._lock:
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[digest] = (clock + ttl, found)
        self._note_use(found.key_id, now)
        return found

    def _verify_stored(self, key: str) -> VerifiedKey | None:
        key_id = api_key_hashing.key_id_of(key)
        with self._sessions() as s:
            row = s.get(ApiKeyRow, key_id) if key_id is not None else None
            if row is None:
                # A key from before named keys, found by its old digest's first digits.
                row = s.scalars(
                    sa.select(ApiKeyRow).where(ApiKeyRow.lookup == api_key_hashing.legacy_lookup(key))
                ).first()
        if row is None or row.revoked_at is not None:
            return None
        if not api_key_hashing.verify(key, row.key_hash):
            return None
        return VerifiedKey(row.key_id, row.tenant, tuple(row.scopes.split(",")))

    # --- last use ------------------------------------------------------------------------------

    def _note_use(self, key_id: str, now: datetime) -> None:
        with self._lock:
            self._used[key_id] = now

    def flush_usage(self) -> int:
        """Write every last use noted since the previous flush; how many keys."""
        with self._lock:
            used, self._used = self._used, {}
        if not used:
            return 0
        table = ApiKeyRow.__table__
        assert isinstance(table, sa.Table)
        try:
            with self._sessions.begin() as s:
                s.connection().execute(
                    sa.update(table)
                    .where(table.c.key_id == sa.bindparam("k"))
                    .where(sa.or_(table.c.last_used_at.is_(None), table.c.last_used_at < sa.bindparam("at")))
                    .values(last_used_at=sa.bindparam("at")),
                    [{"k": k, "at": at} for k, at in used.items()],
                )
        except sa.exc.SQLAlchemyError:
            with self._lock:  # kept for the next flush, unless a newer use was noted meanwhile
                self._used = {**used, **self._used}
            raise
        return len(used)


class UsageFlusher:
    """Calls `flush_usage` every `interval` seconds on a daemon thread, and once more at stop."""

    def __init__(self, registry: ApiKeyRegistry, interval: float) -> None:
        self._registry = registry
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-key-usage", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._flush()

    def _flush(self) -> None:
        try:
            self._registry.flush_usage()
        except sa.exc.SQLAlchemyError as err:  # kept in memory; the next round writes them
            log.warning("api_key_usage_not_written", error=type(err).__name__)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._flush()

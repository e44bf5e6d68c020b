"""Tenant call accounting in Redis: rate windows, concurrency slots and the daily budget.

Each reservation and settlement is one Lua script, so any number of processes (and machines)
sharing the Redis see one consistent account. Money is held as integer micro-dollars.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import redis
from redis.lock import Lock

from leadflow_core.settings import CommonSettings

MICROS = Decimal(1_000_000)

# KEYS: rate zset, active zset, day hash, reservation hash
# ARGV: now_ms, reservation_id, per_minute, per_hour, per_day, concurrency, budget_micros (-1 = none),
#       estimate_micros, slot_ttl_ms, day_key_ttl_s, reservation_ttl_s
_RESERVE = """
local existing = redis.call('HGET', KEYS[4], 'id')
if existing then return {1, 'existing', 0} end
local now = tonumber(ARGV[1])
local id = ARGV[2]
local per_minute, per_hour, per_day = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local concurrency, budget, estimate = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local function retry_after(window_start, count, limit, window_ms)
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. window_start, '+inf', 'WITHSCORES',
                            'LIMIT', count - limit, 1)
  return tonumber(oldest[2]) + window_ms - now
end
if per_minute > 0 then
  local n = redis.call('ZCOUNT', KEYS[1], '(' .. (now - 60000), '+inf')
  if n >= per_minute then return {0, 'minute', retry_after(now - 60000, n, per_minute, 60000)} end
end
if per_hour > 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= per_hour then return {0, 'hour', retry_after(now - 3600000, n, per_hour, 3600000)} end
end
local calls = tonumber(redis.call('HGET', KEYS[3], 'calls') or '0')
if per_day > 0 and calls >= per_day then return {0, 'day', 0} end
if concurrency > 0 and redis.call('ZCARD', KEYS[2]) >= concurrency then
  return {0, 'concurrency', 0}
end
local spend = tonumber(redis.call('HGET', KEYS[3], 'spend') or '0')
if budget >= 0 and spend + estimate > budget then return {0, 'budget', 0} end
redis.call('ZADD', KEYS[1], now, id)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[9]), id)
redis.call('HINCRBY', KEYS[3], 'calls', 1)
redis.call('HINCRBY', KEYS[3], 'spend', estimate)
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[10]))
redis.call('HSET', KEYS[4], 'id', id, 'estimate', estimate, 'day', KEYS[3], 'state', 'held')
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[11]))
return {1, 'new', 0}
"""

# KEYS: rate zset, active zset, reservation hash. ARGV: reservation_id, not_placed (0|1), actual_micros
_SETTLE = """
if redis.call('HGET', KEYS[3], 'state') ~= 'held' then return 0 end
local id = ARGV[1]
local estimate = tonumber(redis.call('HGET', KEYS[3], 'estimate'))
local day = redis.call('HGET', KEYS[3], 'day')
redis.call('ZREM', KEYS[2], id)
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[1], id)
  redis.call('HINCRBY', day, 'calls', -1)
  -- Never `-estimate` when it is 0: Lua renders -0 as "-0", which HINCRBY refuses mid-script
  -- (after the writes above, which a failed script does not undo).
  if estimate ~= 0 then redis.call('HINCRBY', day, 'spend', 0 - estimate) end
  -- Never placed: forget it, so a retry of the same attempt can reserve again.
  redis.call('DEL', KEYS[3])
  return 1
end
redis.call('HINCRBY', day, 'spend', tonumber(ARGV[3]) - estimate)
redis.call('HSET', KEYS[3], 'state', 'settled')
return 1
"""


def to_micros(usd: str) -> int:
    """Decimal dollars ("1.25") to integer micro-dollars; ValueError on anything else."""
    try:
        value = Decimal(usd or "0")
    except InvalidOperation as err:
        raise ValueError(f"not a decimal amount: {usd!r}") from err
    if not value.is_finite() or value < 0:
        raise ValueError(f"not a non-negative amount: {usd!r}")
    return int((value * MICROS).to_integral_value())


def from_micros(micros: int) -> str:
    return f"{(Decimal(micros) / MICROS).quantize(Decimal('0.01'))}"


def reservation_id_for(tenant: str, attempt_id: str) -> str:
    """Deterministic, so a repeated attempt finds its reservation without a lookup."""
    return "r_" + hashlib.sha256(f"{tenant}\0{attempt_id}".encode()).hexdigest()[:30]


@dataclass(frozen=True)
class Limits:
    per_minute: int
    per_hour: int
    per_day: int
    concurrency: int
    # None: no budget set.
    daily_budget_micros: int | None

    def boosted(self, percent: int) -> Limits:
        """Emergency and high leads may use `percent` more of the rate limits."""

        def lift(n: int) -> int:
            return n + n * percent // 100 if n > 0 else n

        return Limits(
            lift(self.per_minute),
            lift(self.per_hour),
            lift(self.per_day),
            self.concurrency,
            self.daily_budget_micros,
        )


@dataclass(frozen=True)
class ReserveResult:
    reserved: bool
    # "new" / "existing" when reserved; else the limit hit: minute, hour, day, concurrency, budget.
    detail: str
    retry_at: datetime | None = None


@dataclass(frozen=True)
class Usage:
    calls_today: int
    spend_today_micros: int
    active_calls: int
    calls_last_minute: int
    calls_last_hour: int


def next_day(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


class Accounts:
    def __init__(self, client: redis.Redis, settings: CommonSettings, slot_ttl_seconds: int = 3600) -> None:
        self.client = client
        self.settings = settings
        self.slot_ttl_ms = slot_ttl_seconds * 1000
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)

    def _keys(self, tenant: str, now: datetime) -> tuple[str, str, str]:
        day = now.astimezone(UTC).strftime("%Y%m%d")
        k = self.settings.redis_key
        return k("acct", tenant, "rate"), k("acct", tenant, "active"), k("acct", tenant, "day", day)

    def reserve(
        self, tenant: str, reservation_id: str, limits: Limits, estimate_micros: int, now: datetime
    ) -> ReserveResult:
        rate, active, day = self._keys(tenant, now)
        res = self.settings.redis_key("acct", tenant, "res", reservation_id)
        now_ms = int(now.timestamp() * 1000)
        budget = -1 if limits.daily_budget_micros is None else limits.daily_budget_micros
        ok, detail, retry_ms = self._reserve(
            keys=[rate, active, day, res],
            args=[
                now_ms,
                reservation_id,
                limits.per_minute,
                limits.per_hour,
                limits.per_day,
                limits.concurrency,
                budget,
                estimate_micros,
                self.slot_ttl_ms,
                3 * 86400,
                2 * 86400,
            ],
        )
        detail = detail.decode() if isinstance(detail, bytes) else str(detail)
        if ok:
            return ReserveResult(True, detail)
        if detail in ("day", "budget"):
            retry_at = next_day(now)
        elif detail == "concurrency":
            retry_at = now + timedelta(seconds=15)
        else:
            retry_at = now + timedelta(milliseconds=max(int(retry_ms), 1))
        return ReserveResult(False, detail, retry_at)

    def reserve_many(self, asks: list[tuple[str, str, Limits, int]], now: datetime) -> list[ReserveResult]:
        """`reserve` for many (tenant, reservation id, limits, estimate) in one pipeline; each
        is still its own atomic script, in order."""
        if not asks:
            return []
        pipe = self.client.pipeline(transaction=False)
        now_ms = int(now.timestamp() * 1000)
        for tenant, reservation_id, limits, estimate_micros in asks:
            rate, active, day = self._keys(tenant, now)
            res = self.settings.redis_key("acct", tenant, "res", reservation_id)
            budget = -1 if limits.daily_budget_micros is None else limits.daily_budget_micros
            self._reserve(
                keys=[rate, active, day, res],
                args=[
                    now_ms,
                    reservation_id,
                    limits.per_minute,
                    limits.per_hour,
                    limits.per_day,
                    limits.concurrency,
                    budget,
                    estimate_micros,
                    self.slot_ttl_ms,
                    3 * 86400,
                    2 * 86400,
                ],
                client=pipe,
            )
        return [_reserve_result(ok, detail, retry_ms, now) for ok, detail, retry_ms in pipe.execute()]

    def settle(
        self, tenant: str, reservation_id: str, not_placed: bool, actual_micros: int, now: datetime
    ) -> bool:
        rate, active, _ = self._keys(tenant, now)
        res = self.settings.redis_key("acct", tenant, "res", reservation_id)
        done = self._settle(
            keys=[rate, active, res], args=[reservation_id, "1" if not_placed else "0", actual_micros]
        )
        return bool(done)

    def person_lock(self, tenant: str, subject: str) -> Lock:
        """Serialises the dial gate for one person across processes (expires if a holder dies)."""
        key = self.settings.redis_key("acct", tenant, "person", subject)
        lock: Lock = self.client.lock(key, timeout=30, blocking_timeout=20)
        return lock

    def usage(self, tenant: str, now: datetime) -> Usage:
        rate, active, day = self._keys(tenant, now)
        now_ms = int(now.timestamp() * 1000)
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(day, "calls")
        pipe.hget(day, "spend")
        pipe.zcount(active, f"({now_ms}", "+inf")
        pipe.zcount(rate, f"({now_ms - 60_000}", now_ms)
        pipe.zcount(rate, f"({now_ms - 3_600_000}", now_ms)
        calls, spend, act, minute, hour = pipe.execute()
        return Usage(int(calls or 0), int(spend or 0), int(act), int(minute), int(hour))


def _reserve_result(ok: int, detail: bytes | str, retry_ms: int, now: datetime) -> ReserveResult:
    """The reserve script's answer, as `Accounts.reserve` reads it."""
    detail = detail.decode() if isinstance(detail, bytes) else str(detail)
    if ok:
        return ReserveResult(True, detail)
    if detail in ("day", "budget"):
        retry_at = next_day(now)
    elif detail == "concurrency":
        retry_at = now + timedelta(seconds=15)
    else:
        retry_at = now + timedelta(milliseconds=max(int(retry_ms), 1))
    return ReserveResult(False, detail, retry_at)

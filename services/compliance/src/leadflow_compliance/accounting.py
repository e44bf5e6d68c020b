"""Tenant call accounting in Redis: rate windows, concurrency slots and the daily budget.

Each reservation and settlement is one Lua script, so any number of processes (and machines)
sharing the Redis see one consistent account. Money is held as integer micro-dollars.

The day's calls and spend are a cache of PostgreSQL (the reservations table, by tenant day): a
day hash without its `init` field was never loaded or was lost with Redis, and the reserve
script refuses to count into it until `rebuild` has loaded the day's totals and its unsettled
reservations (so their settlement still moves the total by price minus estimate).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import redis
from redis.lock import Lock

from leadflow_core.settings import CommonSettings

MICROS = Decimal(1_000_000)
# A day hash outlives its day (usage of yesterday stays readable); a reservation lives long
# enough for a late settlement.
DAY_KEY_TTL_S = 3 * 86400
RESERVATION_TTL_S = 2 * 86400

# KEYS: rate zset, active zset, day hash, reservation hash
# ARGV: now_ms, reservation_id, per_minute, per_hour, per_day, concurrency, budget_micros (-1 = none),
#       estimate_micros, slot_ttl_ms, day_key_ttl_s, reservation_ttl_s
_RESERVE = """
local existing = redis.call('HGET', KEYS[4], 'id')
if existing then return {1, 'existing', 0} end
if redis.call('HEXISTS', KEYS[3], 'init') == 0 then return {0, 'rebuild', 0} end
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
redis.call('HSET', KEYS[3], 'state', 'settled', 'actual', ARGV[3])
return 1
"""

# KEYS: reservation hash. ARGV: the provider's price (micros) of a call settled without one.
# Once per reservation ('priced'): the day's spend moves from what was settled to the price.
_REPRICE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'settled' then return 0 end
if redis.call('HEXISTS', KEYS[1], 'priced') == 1 then return 0 end
local settled = tonumber(redis.call('HGET', KEYS[1], 'actual') or redis.call('HGET', KEYS[1], 'estimate'))
local delta = tonumber(ARGV[1]) - settled
if delta ~= 0 then redis.call('HINCRBY', redis.call('HGET', KEYS[1], 'day'), 'spend', delta) end
redis.call('HSET', KEYS[1], 'priced', 1, 'actual', ARGV[1])
return 1
"""


# KEYS: day hash, active zset, then one reservation hash per unsettled reservation.
# ARGV: calls, spend_micros, day_key_ttl_s, reservation_ttl_s, then per reservation: id,
#       estimate_micros, slot expiry ms (0 = its slot has expired).
_REBUILD = """
if redis.call('HEXISTS', KEYS[1], 'init') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'calls', ARGV[1], 'spend', ARGV[2], 'init', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
for i = 3, #KEYS do
  local base = 5 + (i - 3) * 3
  local id, estimate, expiry = ARGV[base], ARGV[base + 1], tonumber(ARGV[base + 2])
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'id', id, 'estimate', estimate, 'day', KEYS[1], 'state', 'held')
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[4]))
    if expiry > 0 then redis.call('ZADD', KEYS[2], expiry, id) end
  end
end
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


def price_micros(usd: str) -> int:
    """A provider's price: Twilio writes money leaving the account as a negative ("-0.01400")."""
    return to_micros(usd.strip().removeprefix("-"))


def usd(micros: int) -> str:
    """Micro-dollars as exact decimal dollars ("0.014000")."""
    return f"{(Decimal(micros) / MICROS).quantize(Decimal('0.000001'))}"


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


@dataclass(frozen=True)
class TenantDay:
    """One business day of a tenant, in its own zone: the date, and the UTC instant it ends."""

    date: date
    ends: datetime


@dataclass(frozen=True)
class HeldReservation:
    reservation_id: str
    estimate_micros: int
    created_at: datetime


@dataclass(frozen=True)
class DayTotals:
    """A tenant day as PostgreSQL records it: placed calls, their spend (settled price, else the
    estimate) and the reservations not yet settled."""

    calls: int
    spend_micros: int
    held: list[HeldReservation]


class Ledger(Protocol):
    def day_totals(self, tenant: str, day: date) -> DayTotals: ...


class _NoLedger:
    def day_totals(self, tenant: str, day: date) -> DayTotals:
        return DayTotals(0, 0, [])


class Accounts:
    def __init__(
        self,
        client: redis.Redis,
        settings: CommonSettings,
        slot_ttl_seconds: int = 3600,
        ledger: Ledger | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.slot_ttl_ms = slot_ttl_seconds * 1000
        self.ledger: Ledger = ledger or _NoLedger()
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._reprice = client.register_script(_REPRICE)
        self._rebuild = client.register_script(_REBUILD)

    def _keys(self, tenant: str, day: date) -> tuple[str, str, str]:
        k = self.settings.redis_key
        return (
            k("acct", tenant, "rate"),
            k("acct", tenant, "active"),
            k("acct", tenant, "day", day.strftime("%Y%m%d")),
        )

    def rebuild(self, tenant: str, day: date, now: datetime) -> bool:
        """Load one tenant day from the ledger into Redis, unless it is loaded already."""
        _, active, day_key = self._keys(tenant, day)
        totals = self.ledger.day_totals(tenant, day)
        keys = [day_key, active]
        args: list[str | int] = [totals.calls, totals.spend_micros, DAY_KEY_TTL_S, RESERVATION_TTL_S]
        now_ms = int(now.timestamp() * 1000)
        for held in totals.held:
            keys.append(self.settings.redis_key("acct", tenant, "res", held.reservation_id))
            expiry = int(held.created_at.timestamp() * 1000) + self.slot_ttl_ms
            args += [held.reservation_id, held.estimate_micros, expiry if expiry > now_ms else 0]
        return bool(self._rebuild(keys=keys, args=args))

    def reserve(
        self,
        tenant: str,
        reservation_id: str,
        limits: Limits,
        estimate_micros: int,
        now: datetime,
        day: TenantDay,
    ) -> ReserveResult:
        for _ in range(3):
            result = self._reserve_once(tenant, reservation_id, limits, estimate_micros, now, day)
            if result.detail != "rebuild":
                return result
            self.rebuild(tenant, day.date, now)
        raise RuntimeError("the tenant day could not be loaded into Redis")

    def _reserve_once(
        self,
        tenant: str,
        reservation_id: str,
        limits: Limits,
        estimate_micros: int,
        now: datetime,
        day: TenantDay,
    ) -> ReserveResult:
        rate, active, day_key = self._keys(tenant, day.date)
        res = self.settings.redis_key("acct", tenant, "res", reservation_id)
        now_ms = int(now.timestamp() * 1000)
        budget = -1 if limits.daily_budget_micros is None else limits.daily_budget_micros
        ok, detail, retry_ms = self._reserve(
            keys=[rate, active, day_key, res],
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
                DAY_KEY_TTL_S,
                RESERVATION_TTL_S,
            ],
        )
        return _reserve_result(ok, detail, retry_ms, now, day)

    def reserve_many(
        self, asks: list[tuple[str, str, Limits, int, TenantDay]], now: datetime
    ) -> list[ReserveResult]:
        """`reserve` for many (tenant, reservation id, limits, estimate, day) in one pipeline;
        each is still its own atomic script, in order. A day that must be loaded first is loaded,
        and the asks that met it are reserved again one by one, in their order."""
        if not asks:
            return []
        pipe = self.client.pipeline(transaction=False)
        now_ms = int(now.timestamp() * 1000)
        for tenant, reservation_id, limits, estimate_micros, tenant_day in asks:
            rate, active, day = self._keys(tenant, tenant_day.date)
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
                    DAY_KEY_TTL_S,
                    RESERVATION_TTL_S,
                ],
                client=pipe,
            )
        results = [
            _reserve_result(ok, detail, retry_ms, now, ask[4])
            for (ok, detail, retry_ms), ask in zip(pipe.execute(), asks, strict=True)
        ]
        for i, (result, ask) in enumerate(zip(results, asks, strict=True)):
            if result.detail == "rebuild":
                results[i] = self.reserve(*ask[:4], now, ask[4])
        return results

    def settle(
        self, tenant: str, reservation_id: str, not_placed: bool, actual_micros: int, now: datetime
    ) -> bool:
        keys, args = self._settle_call(tenant, reservation_id, not_placed, actual_micros)
        return bool(self._settle(keys=keys, args=args))

    def settle_many(self, settles: Sequence[tuple[str, str, bool, int]]) -> list[bool]:
        """`settle` for many (tenant, reservation id, not placed, actual micros) in one pipeline,
        each its own atomic script: whether each moved its held reservation. (A pipeline of
        scripts costs one more round trip, redis-py's SCRIPT EXISTS, so one settle goes alone.)"""
        if not settles:
            return []
        pipe = self.client.pipeline(transaction=False)
        for settle in settles:
            keys, args = self._settle_call(*settle)
            self._settle(keys=keys, args=args, client=pipe)
        return [bool(done) for done in pipe.execute()]

    def _settle_call(
        self, tenant: str, reservation_id: str, not_placed: bool, actual_micros: int
    ) -> tuple[list[str], list[Any]]:
        """The settle script's keys and arguments."""
        k = self.settings.redis_key
        rate, active = k("acct", tenant, "rate"), k("acct", tenant, "active")
        keys = [rate, active, k("acct", tenant, "res", reservation_id)]
        return keys, [reservation_id, "1" if not_placed else "0", actual_micros]

    def reprice(self, tenant: str, reservation_id: str, price_micros: int) -> bool:
        """The price of a call settled at its estimate: the day's spend takes the difference,
        once. False when Redis no longer holds the reservation (its day is then rebuilt from
        PostgreSQL, which has the price) or already has the price."""
        res = self.settings.redis_key("acct", tenant, "res", reservation_id)
        return bool(self._reprice(keys=[res], args=[price_micros]))

    def person_lock(self, tenant: str, subject: str) -> Lock:
        """Serialises the dial gate for one person across processes (expires if a holder dies)."""
        key = self.settings.redis_key("acct", tenant, "person", subject)
        lock: Lock = self.client.lock(key, timeout=30, blocking_timeout=20)
        return lock

    def usage(self, tenant: str, now: datetime, tenant_day: date) -> Usage:
        rate, active, day = self._keys(tenant, tenant_day)
        if not self.client.hexists(day, "init"):
            self.rebuild(tenant, tenant_day, now)
        now_ms = int(now.timestamp() * 1000)
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(day, "calls")
        pipe.hget(day, "spend")
        pipe.zcount(active, f"({now_ms}", "+inf")
        pipe.zcount(rate, f"({now_ms - 60_000}", now_ms)
        pipe.zcount(rate, f"({now_ms - 3_600_000}", now_ms)
        calls, spend, act, minute, hour = pipe.execute()
        return Usage(int(calls or 0), int(spend or 0), int(act), int(minute), int(hour))


def _reserve_result(
    ok: int, detail: bytes | str, retry_ms: int, now: datetime, day: TenantDay
) -> ReserveResult:
    """The reserve script's answer: a day or budget limit is retried when the tenant's next day
    begins, at its own midnight."""
    detail = detail.decode() if isinstance(detail, bytes) else str(detail)
    if ok:
        return ReserveResult(True, detail)
    if detail == "rebuild":
        return ReserveResult(False, detail)
    if detail in ("day", "budget"):
        retry_at = day.ends
    elif detail == "concurrency":
        retry_at = now + timedelta(seconds=15)
    else:
        retry_at = now + timedelta(milliseconds=max(int(retry_ms), 1))
    return ReserveResult(False, detail, retry_at)

"""The provider gate: every provider's limits and health, shared by every worker process and machine.

Before each message the sender asks the gate for a slot on the provider it chose (acquire), and
tells it how the hand-over went (failed, succeeded). All the state lives in Redis, changed by Lua
scripts that run atomically and read Redis's own clock (TIME), so neither the number of workers nor
their clocks matter:

1. Per second: a GCRA meter (the "theoretical arrival time" of the next message). A grant is a
   reservation of the next free slot, `1/max_per_second` after the last one; the worker sleeps
   until its slot. Slots are exactly evenly spaced, so any 1 s window holds at most max_per_second
   of them (Celery's rate_limit is per worker and would let 4 workers send 4 times the limit).
   A slot further away than the caller can wait is not taken: the caller defers its rows.
2. Per hour and per day: counters of the clock hour and the UTC day. Bulk mail leaves the last
   URGENT_RESERVE of each quota to urgent mail (confirmations, tests), which may take all of it.
3. Concurrent connections: a sorted set of holders with expiry times (a holder that dies frees its
   place when its lease runs out).
4. Health: failures counted per provider; a refused connection pauses the provider at once, other
   transient failures (421, 454, time-outs) after `failures_to_pause` in a row. A pause lasts
   `pause_seconds`, doubled at each further pause up to `pause_max_seconds`; a success clears the
   count. While paused, acquire refuses and says until when: the rows wait in the database or take
   the next provider of their route (course/delivery/routing.py).

Without Redis (the embedded single-machine mode) LocalGate keeps the same state in the process:
limits then hold per process only, which `course check-config` refuses in production.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from course.settings import ProviderSettings, Settings

PREFIX = "course:provider:"
URGENT_RESERVE = 0.02  # the share of an hourly or daily quota bulk mail leaves to urgent mail
RATE_WINDOW_SECONDS = 10  # the "current rate" shown is the mean over this many full seconds


class GateUnavailable(RuntimeError):
    """The gate's Redis did not answer: limits and health cannot be read or written now."""


@dataclass(frozen=True)
class Grant:
    """The gate's answer. granted: send after sleeping `wait` seconds. Not granted: `why` is
    "paused", "second", "hour", "day" or "connections", and nothing may go before `wait` seconds."""

    granted: bool
    wait: float
    why: str = "ok"

    @property
    def paused(self) -> bool:
        return self.why == "paused"


@dataclass(frozen=True)
class ProviderHealth:
    paused_until: datetime | None
    reason: str
    failures: int  # transient failures in a row since the last success or pause
    pauses: int  # pauses in a row (the back-off's exponent)


@dataclass(frozen=True)
class ProviderUsage:
    sent_this_hour: int
    sent_today: int
    connections: int
    rate_per_second: float  # mean over the last RATE_WINDOW_SECONDS full seconds


class Gate(Protocol):
    def acquire(self, name: str, limits: ProviderSettings, *, urgent: bool, max_wait: float) -> Grant: ...
    def failed(self, name: str, reason: str, *, at_once: bool) -> datetime | None: ...
    def succeeded(self, name: str) -> None: ...
    def hold_connection(self, name: str, limit: int, holder: str, *, seconds: float) -> bool: ...
    def release_connection(self, name: str, holder: str) -> None: ...
    def health(self, name: str) -> ProviderHealth: ...
    def usage(self, name: str) -> ProviderUsage: ...
    def resume(self, name: str) -> None: ...
    def pause_left(self, name: str) -> float: ...
    def count(self, name: str, sent: int) -> None: ...


@dataclass(frozen=True)
class PausePolicy:
    pause_seconds: float = 30.0
    pause_max_seconds: float = 1800.0
    failures_to_pause: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> PausePolicy:
        return cls(settings.provider_pause_seconds, settings.provider_pause_max_seconds, settings.provider_failures_to_pause)

    def pause_for(self, pauses: int) -> float:
        """The length of the `pauses`-th pause in a row (1-based): doubled each time, capped."""
        return min(self.pause_seconds * 2 ** max(pauses - 1, 0), self.pause_max_seconds)


def reserve_of(quota: int | None, *, urgent: bool) -> int:
    """What bulk mail must leave of a quota (urgent mail may use it all)."""
    if quota is None or urgent:
        return 0
    return max(1, math.ceil(quota * URGENT_RESERVE)) if quota > 1 else 0


def _keys(name: str) -> dict[str, str]:
    base = PREFIX + name
    return {
        "tat": base + ":tat",
        "hour": base + ":hour",
        "day": base + ":day",
        "paused": base + ":paused_until",
        "reason": base + ":pause_reason",
        "failures": base + ":failures",
        "pauses": base + ":pauses",
        "rate": base + ":rate",
        "connections": base + ":connections",
    }


# Times are integer microseconds of Redis's clock; string.format('%.0f') keeps them out of the
# scientific notation Lua's tostring would give numbers past 1e14.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local hour_cap = tonumber(ARGV[3])
local day_cap = tonumber(ARGV[4])
local paused = tonumber(redis.call('GET', KEYS[4]) or '0')
if paused > now then return {0, string.format('%.0f', paused - now), 'paused'} end
local hour = math.floor(now / 3600000000)
local day = math.floor(now / 86400000000)
local hkey = KEYS[2] .. ':' .. hour
local dkey = KEYS[3] .. ':' .. day
if hour_cap >= 0 and tonumber(redis.call('GET', hkey) or '0') >= hour_cap then
  return {0, string.format('%.0f', (hour + 1) * 3600000000 - now), 'hour'}
end
if day_cap >= 0 and tonumber(redis.call('GET', dkey) or '0') >= day_cap then
  return {0, string.format('%.0f', (day + 1) * 86400000000 - now), 'day'}
end
local wait = 0
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  wait = tat - now
  if wait > max_wait then return {0, string.format('%.0f', wait), 'second'} end
  redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', math.floor((wait + interval) / 1000) + 1000)
end
redis.call('INCR', hkey)
redis.call('EXPIRE', hkey, 7200)
redis.call('INCR', dkey)
redis.call('EXPIRE', dkey, 172800)
local rkey = KEYS[5] .. ':' .. math.floor((now + wait) / 1000000)
redis.call('INCR', rkey)
redis.call('EXPIRE', rkey, 120)
return {1, string.format('%.0f', wait), 'ok'}
"""

_FAILED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local failures = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 3600)
if ARGV[1] ~= '1' and failures < tonumber(ARGV[2]) then return {0, '0'} end
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return {1, string.format('%.0f', paused)} end
local pauses = redis.call('INCR', KEYS[4])
local length = math.min(tonumber(ARGV[3]) * 2 ^ (pauses - 1), tonumber(ARGV[4]))
local till = now + length
redis.call('EXPIRE', KEYS[4], math.floor(tonumber(ARGV[4]) / 1000000) * 4 + 60)
redis.call('SET', KEYS[2], string.format('%.0f', till), 'PX', math.floor(length / 1000) + 1000)
redis.call('SET', KEYS[3], ARGV[5], 'EX', 86400)
redis.call('DEL', KEYS[1])
return {1, string.format('%.0f', till)}
"""

_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[3])), ARGV[2])
  redis.call('EXPIRE', KEYS[1], math.floor(tonumber(ARGV[3]) / 1000000) + 60)
  return 1
end
return 0
"""


# What acquire counts, for a provider with no rate or quota to check (the sender's light path).
_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local hkey = KEYS[1] .. ':' .. math.floor(now / 3600000000)
local dkey = KEYS[2] .. ':' .. math.floor(now / 86400000000)
local rkey = KEYS[3] .. ':' .. math.floor(now / 1000000)
redis.call('INCRBY', hkey, n)
redis.call('EXPIRE', hkey, 7200)
redis.call('INCRBY', dkey, n)
redis.call('EXPIRE', dkey, 172800)
redis.call('INCRBY', rkey, n)
redis.call('EXPIRE', rkey, 120)
return 1
"""

_PAUSE_LEFT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
if paused > now then return string.format('%.0f', paused - now) end
return '0'
"""


def _from_micros(value: Any) -> float:
    return int(value) / 1_000_000


def _limits_args(limits: ProviderSettings, *, urgent: bool, max_wait: float) -> list[str]:
    interval = round(1_000_000 / limits.max_per_second) if limits.max_per_second else 0
    caps = [-1 if quota is None else quota - reserve_of(quota, urgent=urgent) for quota in (limits.max_per_hour, limits.max_per_day)]
    return [str(interval), str(round(max_wait * 1_000_000)), *map(str, caps)]


def _answered(method: Any) -> Any:
    """A RedisGate method whose Redis errors become GateUnavailable, naming the provider."""
    import functools

    @functools.wraps(method)
    def wrapper(self: RedisGate, name: str, *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            return method(self, name, *args, **kwargs)
        except redis.RedisError as exc:
            raise GateUnavailable(f"the provider gate's Redis did not answer about provider {name}: {exc}") from exc

    return wrapper


class RedisGate:
    """The gate over one Redis shared by every worker (the broker's, normally). Its methods raise
    GateUnavailable when Redis does not answer."""

    def __init__(self, client: Any, policy: PausePolicy) -> None:
        self.client = client
        self.policy = policy
        self._acquire = client.register_script(_ACQUIRE)
        self._failed = client.register_script(_FAILED)
        self._hold = client.register_script(_HOLD)
        self._count = client.register_script(_COUNT)
        self._pause_left = client.register_script(_PAUSE_LEFT)

    @_answered
    def acquire(self, name: str, limits: ProviderSettings, *, urgent: bool, max_wait: float) -> Grant:
        k = _keys(name)
        granted, wait, why = self._acquire(
            keys=[k["tat"], k["hour"], k["day"], k["paused"], k["rate"]],
            args=_limits_args(limits, urgent=urgent, max_wait=max_wait),
        )
        return Grant(bool(granted), _from_micros(wait), why.decode() if isinstance(why, bytes) else str(why))

    @_answered
    def failed(self, name: str, reason: str, *, at_once: bool) -> datetime | None:
        k = _keys(name)
        paused, till = self._failed(
            keys=[k["failures"], k["paused"], k["reason"], k["pauses"]],
            args=[
                "1" if at_once else "0",
                str(self.policy.failures_to_pause),
                str(round(self.policy.pause_seconds * 1_000_000)),
                str(round(self.policy.pause_max_seconds * 1_000_000)),
                reason[:500],
            ],
        )
        return datetime.fromtimestamp(_from_micros(till), UTC) if paused else None

    @_answered
    def pause_left(self, name: str) -> float:
        """Seconds until the provider's pause ends (0: not paused)."""
        return _from_micros(self._pause_left(keys=[_keys(name)["paused"]]))

    @_answered
    def count(self, name: str, sent: int) -> None:
        """Count `sent` messages that went through a provider without acquire (no limits to check)."""
        k = _keys(name)
        self._count(keys=[k["hour"], k["day"], k["rate"]], args=[str(sent)])

    @_answered
    def succeeded(self, name: str) -> None:
        k = _keys(name)
        self.client.delete(k["failures"], k["pauses"])

    @_answered
    def resume(self, name: str) -> None:
        k = _keys(name)
        self.client.delete(k["failures"], k["pauses"], k["paused"], k["reason"])

    @_answered
    def hold_connection(self, name: str, limit: int, holder: str, *, seconds: float) -> bool:
        return bool(self._hold(keys=[_keys(name)["connections"]], args=[str(limit), holder, str(round(seconds * 1_000_000))]))

    @_answered
    def release_connection(self, name: str, holder: str) -> None:
        self.client.zrem(_keys(name)["connections"], holder)

    @_answered
    def health(self, name: str) -> ProviderHealth:
        k = _keys(name)
        seconds, micros = self.client.time()
        now = seconds * 1_000_000 + micros
        paused, reason, failures, pauses = self.client.mget(k["paused"], k["reason"], k["failures"], k["pauses"])
        until = int(paused) if paused and int(paused) > now else None
        return ProviderHealth(
            paused_until=datetime.fromtimestamp(until / 1_000_000, UTC) if until else None,
            reason=(reason or b"").decode() if until else "",
            failures=int(failures or 0),
            pauses=int(pauses or 0),
        )

    @_answered
    def usage(self, name: str) -> ProviderUsage:
        k = _keys(name)
        seconds, micros = self.client.time()
        now = seconds * 1_000_000 + micros
        second = now // 1_000_000
        rate_keys = [f"{k['rate']}:{second - back}" for back in range(1, RATE_WINDOW_SECONDS + 1)]
        values = self.client.mget(f"{k['hour']}:{now // 3_600_000_000}", f"{k['day']}:{now // 86_400_000_000}", *rate_keys)
        self.client.zremrangebyscore(k["connections"], "-inf", now)
        return ProviderUsage(
            sent_this_hour=int(values[0] or 0),
            sent_today=int(values[1] or 0),
            connections=int(self.client.zcard(k["connections"])),
            rate_per_second=sum(int(v or 0) for v in values[2:]) / RATE_WINDOW_SECONDS,
        )


class LocalGate:
    """The same rules in this process only (no Redis): for one process, or tests."""

    def __init__(self, policy: PausePolicy, clock: Any = time.time) -> None:
        self.policy = policy
        self.clock = clock
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}
        self._counts: dict[tuple[str, str, int], int] = {}
        self._paused: dict[str, tuple[float, str]] = {}
        self._failures: dict[str, int] = {}
        self._pauses: dict[str, int] = {}
        self._connections: dict[str, dict[str, float]] = {}
        self._rate: dict[tuple[str, int], int] = {}

    def acquire(self, name: str, limits: ProviderSettings, *, urgent: bool, max_wait: float) -> Grant:
        with self._lock:
            now = self.clock()
            paused = self._paused.get(name)
            if paused and paused[0] > now:
                return Grant(False, paused[0] - now, "paused")
            hour, day = int(now // 3600), int(now // 86400)
            for why, quota, index, span in (("hour", limits.max_per_hour, hour, 3600), ("day", limits.max_per_day, day, 86400)):
                if quota is not None and self._counts.get((name, why, index), 0) >= quota - reserve_of(quota, urgent=urgent):
                    return Grant(False, (index + 1) * span - now, why)
            wait = 0.0
            if limits.max_per_second:
                tat = max(self._tat.get(name, 0.0), now)
                wait = tat - now
                if wait > max_wait:
                    return Grant(False, wait, "second")
                self._tat[name] = tat + 1 / limits.max_per_second
            for why, index in (("hour", hour), ("day", day)):
                self._counts[(name, why, index)] = self._counts.get((name, why, index), 0) + 1
            second = int(now + wait)
            self._rate[(name, second)] = self._rate.get((name, second), 0) + 1
            return Grant(True, wait)

    def pause_left(self, name: str) -> float:
        with self._lock:
            paused = self._paused.get(name)
            return max(paused[0] - self.clock(), 0.0) if paused else 0.0

    def count(self, name: str, sent: int) -> None:
        with self._lock:
            now = self.clock()
            for why, index in (("hour", int(now // 3600)), ("day", int(now // 86400))):
                self._counts[(name, why, index)] = self._counts.get((name, why, index), 0) + sent
            self._rate[(name, int(now))] = self._rate.get((name, int(now)), 0) + sent

    def failed(self, name: str, reason: str, *, at_once: bool) -> datetime | None:
        with self._lock:
            now = self.clock()
            failures = self._failures[name] = self._failures.get(name, 0) + 1
            if not at_once and failures < self.policy.failures_to_pause:
                return None
            paused = self._paused.get(name)
            if paused and paused[0] > now:
                return datetime.fromtimestamp(paused[0], UTC)
            pauses = self._pauses[name] = self._pauses.get(name, 0) + 1
            till = now + self.policy.pause_for(pauses)
            self._paused[name] = (till, reason[:500])
            self._failures[name] = 0
            return datetime.fromtimestamp(till, UTC)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)
            self._pauses.pop(name, None)

    def resume(self, name: str) -> None:
        with self._lock:
            for state in (self._failures, self._pauses, self._paused):
                state.pop(name, None)

    def hold_connection(self, name: str, limit: int, holder: str, *, seconds: float) -> bool:
        with self._lock:
            now = self.clock()
            holders = {h: t for h, t in self._connections.get(name, {}).items() if t > now}
            if holder in holders or len(holders) < limit:
                holders[holder] = now + seconds
                self._connections[name] = holders
                return True
            self._connections[name] = holders
            return False

    def release_connection(self, name: str, holder: str) -> None:
        with self._lock:
            self._connections.get(name, {}).pop(holder, None)

    def health(self, name: str) -> ProviderHealth:
        with self._lock:
            now = self.clock()
            paused = self._paused.get(name)
            live = paused is not None and paused[0] > now
            return ProviderHealth(
                paused_until=datetime.fromtimestamp(paused[0], UTC) if live and paused else None,
                reason=paused[1] if live and paused else "",
                failures=self._failures.get(name, 0),
                pauses=self._pauses.get(name, 0),
            )

    def usage(self, name: str) -> ProviderUsage:
        with self._lock:
            now = self.clock()
            second = int(now)
            return ProviderUsage(
                sent_this_hour=self._counts.get((name, "hour", int(now // 3600)), 0),
                sent_today=self._counts.get((name, "day", int(now // 86400)), 0),
                connections=sum(1 for t in self._connections.get(name, {}).values() if t > now),
                rate_per_second=sum(self._rate.get((name, second - back), 0) for back in range(1, RATE_WINDOW_SECONDS + 1)) / RATE_WINDOW_SECONDS,
            )


def holder_id() -> str:
    """A connection holder's name: unique per process and task."""
    return uuid.uuid4().hex


def gate_client(url: str) -> Any:
    import redis

    # Short time-outs: the gate sits between two messages on the send path.
    return redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)


_process_gate: dict[tuple[str, PausePolicy], Gate] = {}


def gate_from_settings(settings: Settings) -> Gate:
    """This process's gate: over Redis when REDIS_URL is set, else in-process."""
    policy = PausePolicy.from_settings(settings)
    key = (settings.redis_url, policy)
    gate = _process_gate.get(key)
    if gate is None:
        gate = _process_gate[key] = RedisGate(gate_client(settings.redis_url), policy) if settings.redis_url else LocalGate(policy)
    return gate

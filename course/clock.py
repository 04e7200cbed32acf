"""Where "now" comes from. Scheduling code never calls datetime.now() itself: it takes `now` as a
parameter, and the I/O shells ask a Clock. Tests walk through days with a ManualClock; the demo runs
the course calendar faster than the wall clock with a FastClock shared by every process through
settings (clock_origin, clock_speed)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Protocol

from course.settings import Settings


class Clock(Protocol):
    # How many calendar seconds pass per wall-clock second. Machinery durations (leases, retry
    # back-off) are wall-clock durations; multiply by speed to compare them with now().
    speed: float

    def now(self) -> datetime: ...


def wall_duration(clock: Clock, seconds: float) -> timedelta:
    """A wall-clock duration expressed in the clock's calendar time."""
    return timedelta(seconds=seconds * clock.speed)


class SystemClock:
    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


@dataclass(frozen=True)
class FastClock:
    """Calendar time that runs `speed` times faster than the wall clock from `origin` (Unix time)."""

    origin: float
    speed: float

    def now(self) -> datetime:
        wall = time.time()
        return datetime.fromtimestamp(self.origin + (wall - self.origin) * self.speed, timezone.utc)


@dataclass
class ManualClock:
    """A clock that moves only when told to: for tests."""

    current: datetime
    speed: float = 1.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> datetime:
        with self._lock:
            return self.current

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self.current += delta
            return self.current

    def set(self, moment: datetime) -> None:
        with self._lock:
            self.current = moment


def clock_from_settings(settings: Settings) -> Clock:
    if settings.clock_speed != 1.0:
        return FastClock(origin=settings.clock_origin or time.time(), speed=settings.clock_speed)
    return SystemClock()


_override: Clock | None = None


def set_clock(clock: Clock | None) -> None:
    """Replace the process-wide clock (tests, the demo); None goes back to the settings' clock."""
    global _override
    _override = clock


def get_clock(settings: Settings) -> Clock:
    return _override or clock_from_settings(settings)

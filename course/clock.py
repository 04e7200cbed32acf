"""Where "now" comes from. Scheduling code never calls datetime.now() itself: it takes `now` as a
parameter, and the I/O shells ask a Clock. Tests walk through days with a ManualClock; the demo runs
the course calendar faster than the wall clock with a FastClock shared by every process through
settings (clock_origin, clock_speed), and saved next to the demo's database so that commands run
beside it read the same calendar.

Two sources, for two kinds of rule:
- get_clock(settings): the course calendar (due times, lesson schedule, campaign scheduling and
  progress). The demo runs it fast.
- get_wall_clock(): real time, for security and abuse rules (admin sessions, sign-in throttles, TOTP
  steps, token last-used, signed-link expiry, rate limits, proofs of work). Never fast: a session
  that lasts 30 minutes lasts 30 real minutes under the demo too. Tests replace it with
  set_wall_clock to walk past an expiry."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
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
    return load_demo_clock(settings) or SystemClock()


# --- the demo's clock, shared with commands run beside `course run` --------------------------------
#
# `course run --day-seconds N` hands its fast clock to its own processes through the environment.
# A command run in another terminal against the same database (`course subscribe`, `course status`)
# must read the same calendar, or it schedules on the wall clock while the demo runs weeks ahead.
# So the demo also writes its clock next to its database, and clock_from_settings reads it back
# when the settings name no clock of their own and point at that same database.

DEMO_CLOCK_FILE = "demo-clock.json"


def _demo_clock_path(settings: Settings) -> Path:
    return settings.var_dir / DEMO_CLOCK_FILE


def save_demo_clock(settings: Settings, clock: FastClock) -> None:
    path = _demo_clock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"origin": clock.origin, "speed": clock.speed, "database": settings.sqlalchemy_url}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")


def forget_demo_clock(settings: Settings) -> bool:
    """Remove the saved demo clock; True if there was one."""
    try:
        _demo_clock_path(settings).unlink()
    except FileNotFoundError:
        return False
    return True


def load_demo_clock(settings: Settings) -> FastClock | None:
    """The demo clock saved for this database, or None. Read again only when the file changes."""
    path = _demo_clock_path(settings)
    try:
        modified = path.stat().st_mtime_ns
    except OSError:
        return None
    key = (str(path), settings.sqlalchemy_url)
    cached = _demo_clocks.get(key)
    if cached is not None and cached[0] == modified:
        return cached[1]
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        found = (
            FastClock(origin=float(record["origin"]), speed=float(record["speed"]))
            if record.get("database") == settings.sqlalchemy_url
            else None
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        found = None  # a half-written or foreign file: not our demo's clock
    _demo_clocks[key] = (modified, found)
    return found


_demo_clocks: dict[tuple[str, str], tuple[int, FastClock | None]] = {}


def continue_calendar(previous: FastClock, speed: float, *, wall: float) -> FastClock:
    """A clock at `speed` whose calendar goes on from where `previous` is at `wall` (Unix time),
    so rows scheduled under the previous clock keep their order and spacing."""
    if speed == previous.speed:
        return previous
    calendar_now = previous.origin + (wall - previous.origin) * previous.speed
    # origin + (wall - origin) * speed == calendar_now, solved for origin.
    return FastClock(origin=(calendar_now - wall * speed) / (1 - speed), speed=speed)


_override: Clock | None = None


def set_clock(clock: Clock | None) -> None:
    """Replace the process-wide clock (tests, the demo); None goes back to the settings' clock."""
    global _override
    _override = clock


def get_clock(settings: Settings) -> Clock:
    return _override or clock_from_settings(settings)


_SYSTEM_CLOCK = SystemClock()
_wall_override: Clock | None = None


def set_wall_clock(clock: Clock | None) -> None:
    """Replace the process-wide real-time source (tests only); None goes back to the system clock."""
    global _wall_override
    _wall_override = clock


def get_wall_clock() -> Clock:
    """Real time, for the rules that must not follow the course calendar (see the module's doc)."""
    return _wall_override or _SYSTEM_CLOCK

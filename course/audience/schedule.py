"""When each lesson is due: pure functions of the enrollment moment, the subscriber's time zone and
the course's cadence. No I/O, no clock: callers pass the moments in."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

ALL_WEEKDAYS = frozenset(range(7))
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class UnknownTimeZone(ValueError):
    pass


def parse_timezone(name: str) -> ZoneInfo:
    """An IANA zone by name; anything else (offsets, paths, blanks) is refused with a clear error."""
    cleaned = name.strip()
    if not cleaned or cleaned not in _zone_names():
        raise UnknownTimeZone(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin")
    try:
        return _zone(cleaned)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # pragma: no cover - guarded by the set above
        raise UnknownTimeZone(f"unknown time zone {name!r}") from exc


@cache
def _zone(name: str) -> ZoneInfo:
    """ZoneInfo keeps only the last eight zones it made for sure (the rest are weakly held), and
    makes a zone again by reading and parsing its file: readers in many zones (a preferences page
    each, a schedule each) made it read a file per call. Only names of _zone_names() get here,
    so this holds at most the ~600 zones there are."""
    return ZoneInfo(name)


_ZONES: frozenset[str] | None = None


def _zone_names() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    return _ZONES


def local_moment(day: date, at: time, zone: ZoneInfo) -> datetime:
    """`at` on `day` in `zone`, as UTC. DST: an ambiguous time (clocks going back) is its first
    occurrence; a time that does not exist (clocks going forward) moves forward by the gap."""
    # zoneinfo reads fold=0 as "the offset in force before the transition": for a time in the
    # spring-forward gap that is the winter offset, which lands after the gap (02:30 -> 03:30).
    return datetime.combine(day, at).replace(tzinfo=zone, fold=0).astimezone(timezone.utc)


def next_allowed_day(day: date, weekdays: frozenset[int]) -> date:
    if not weekdays:
        raise ValueError("a course needs at least one weekday to send on")
    while day.weekday() not in weekdays:
        day += timedelta(days=1)
    return day


def lesson_due_times(
    first_due: datetime,
    count: int,
    *,
    zone: ZoneInfo,
    send_time: time,
    days_between: int,
    weekdays: frozenset[int] = ALL_WEEKDAYS,
) -> list[datetime]:
    """Due moments (UTC) for `count` lessons in a row.

    1. The first lesson is due at `first_due` (enrollment, or "send the next one now").
    2. Each later lesson is due `days_between` local calendar days after the previous one's local
       day, at `send_time` in the subscriber's zone: counting calendar days, not 24-hour periods,
       keeps 09:00 at 09:00 across DST changes.
    3. A lesson that would fall on a day the course does not send waits for the next allowed day,
       and the lessons after it count from there, so two lessons never land on one day.
    """
    if count <= 0:
        return []
    if days_between < 1:
        raise ValueError("days_between must be at least 1")
    due = [first_due.astimezone(timezone.utc)]
    day = first_due.astimezone(zone).date()
    for _ in range(count - 1):
        day = next_allowed_day(day + timedelta(days=days_between), weekdays)
        due.append(local_moment(day, send_time, zone))
    return due


def next_send_slot(after: datetime, *, zone: ZoneInfo, send_time: time, weekdays: frozenset[int]) -> datetime:
    """The first allowed local send time at or after `after`: when a resumed course goes on."""
    day = after.astimezone(zone).date()
    while True:
        day = next_allowed_day(day, weekdays)
        moment = local_moment(day, send_time, zone)
        if moment >= after:
            return moment
        day += timedelta(days=1)

"""When a campaign's rows are due. Pure parts (read a schedule from a form, the UTC moment of a
wall time in each zone) and the two statements that need the database: the recipients counted per
time zone, and the CASE on subscribers.timezone that gives each fanned-out row its zone's moment,
so even a per-subscriber local-time send stays one INSERT … SELECT."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, case, func, literal
from sqlalchemy.orm import Session

from course.campaigns.refusals import InputRefused
from course.audience.schedule import UnknownTimeZone, local_moment, parse_timezone
from course.models import Subscriber, UTCDateTime

# Scheduling for a minute ago is "now"; further in the past is a mistake.
PAST_TOLERANCE = timedelta(minutes=1)


class ScheduleError(InputRefused):
    """A schedule that cannot be read: `field` names the part (mode, day, at, zone)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, {field: message})
        self.field = field


@dataclass(frozen=True)
class Schedule:
    """"now"; "at" a wall time in a chosen zone; or "local": a wall time in each subscriber's zone."""

    mode: str
    day: date | None = None
    at: time | None = None
    zone: str = "UTC"


def parse_schedule(mode: str, day: str = "", at: str = "", zone: str = "UTC") -> Schedule:
    if mode == "now":
        return Schedule("now")
    if mode not in ("at", "local"):
        raise ScheduleError(f"unknown schedule {mode!r}: use now, at or local", "mode")
    try:
        parsed_day = date.fromisoformat(day.strip())
    except ValueError:
        raise ScheduleError(f"{day.strip()!r} is not a date: use YYYY-MM-DD", "day") from None
    try:
        parsed_at = time.fromisoformat(at.strip())
    except ValueError:
        raise ScheduleError(f"{at.strip()!r} is not a time: use HH:MM", "at") from None
    if mode == "at":
        try:
            parse_timezone(zone)
        except UnknownTimeZone as exc:
            raise ScheduleError(str(exc), "zone") from None
    return Schedule(mode, parsed_day, parsed_at.replace(second=0, microsecond=0), zone.strip() or "UTC")


def zone_of(name: str) -> ZoneInfo:
    try:
        return parse_timezone(name)
    except UnknownTimeZone:
        return ZoneInfo("UTC")  # zones are checked at sign-up; an odd old one falls back to UTC


def zone_moments(when: Schedule, zones: list[str]) -> dict[str, datetime]:
    """The UTC moment of the schedule's wall time in each zone (DST-correct, via local_moment)."""
    assert when.day is not None and when.at is not None
    return {name: local_moment(when.day, when.at, zone_of(name)) for name in zones}


def recipient_zones(session: Session, recipients: Select[Any]) -> dict[str, int]:
    """How many recipients live in each time zone: one GROUP BY over the recipients' SELECT."""
    grouped = recipients.with_only_columns(Subscriber.timezone, func.count()).group_by(Subscriber.timezone)
    return {zone: count for zone, count in session.execute(grouped)}


def local_due_at(moments: dict[str, datetime], *, now: datetime) -> ColumnElement[Any]:
    """CASE subscribers.timezone WHEN zone THEN its moment … END, a moment already past being now."""
    if not moments:
        return literal(now, UTCDateTime())
    return case(
        {zone: literal(max(moment, now), UTCDateTime()) for zone, moment in moments.items()},
        value=Subscriber.timezone,
        else_=literal(now, UTCDateTime()),
    )
